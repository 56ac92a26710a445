#!/usr/bin/env bash
# Sets up everything the tests need on a fresh Debian machine (Debian
# packages, .venv with the test extra) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-debian-packages.sh
CONFIGDRIVE_EXTRAS="[test]" bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
