#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine (Debian
# packages, .venv from requirements-test.txt), runs the static checks (ruff,
# mypy: their settings are in pyproject.toml), then the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-debian-packages.sh
bash scripts/setup.sh test
.venv/bin/ruff check --quiet .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
