"""One module per group of CLI commands, imported lazily by configdrive.cli."""
