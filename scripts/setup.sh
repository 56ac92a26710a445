#!/usr/bin/env bash
# Creates .venv and installs configdrive into it (editable), every Python
# package taken from a lock file (scripts/lock.sh writes them) with its
# hashes checked.
#
#   bash scripts/setup.sh        requirements.txt, or requirements-libvirt.txt
#                                when libvirt's development files are present
#                                (pkg-config finds libvirt): `configdrive attach` works
#   bash scripts/setup.sh test   requirements-test.txt: the test, libvirt and postgres extras
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    "") if pkg-config --exists libvirt 2>/dev/null; then lock=requirements-libvirt.txt
        else lock=requirements.txt; fi ;;
    test) lock=requirements-test.txt ;;
    *) echo "usage: bash scripts/setup.sh [test]" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
# The build backend first, so that nothing below is built in an isolated
# environment that pip would fill with unpinned downloads.
"${pip[@]}" --require-hashes -r requirements-build.txt
"${pip[@]}" --require-hashes --no-build-isolation -r "$lock"
# compat mode: a plain .pth path entry; the default import-hook finder costs
# ~30 ms at every interpreter start, which the CLI pays on each run.
"${pip[@]}" --no-deps --no-build-isolation --config-settings editable_mode=compat -e .
echo "configdrive installed in .venv from $lock"
