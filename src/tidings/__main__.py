"""``python -m tidings`` runs the command-line interface."""

from tidings.cli.app import main

main()
