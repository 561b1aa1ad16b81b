"""Commands: see COMMANDS."""
COMMANDS: list = []
