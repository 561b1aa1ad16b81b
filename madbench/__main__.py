"""``python -m madbench`` runs the command line."""
from .cli import main

main()
