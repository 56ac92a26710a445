"""`python -m configdrive` runs the CLI (the tests use it with the venv's interpreter)."""
from configdrive.cli import main

main()
