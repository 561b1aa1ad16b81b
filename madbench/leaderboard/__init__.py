"""Leaderboards: submissions built from stored run records (``submit``), checked so that no
number can be edited in (``validate``: schema, hashes, aggregates recomputed from the runs,
architecture rebuilt, spot re-runs), and rendered into ``leaderboards/README.md`` (``render``).
"""
