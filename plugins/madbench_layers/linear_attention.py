"""Placeholder until the layer lands."""
MIXERS: list = []
