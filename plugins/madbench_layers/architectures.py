"""Named MAD architectures."""
PRESETS: dict = {}
