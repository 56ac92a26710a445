#!/usr/bin/env bash
# Creates .venv and installs configdrive into it (editable). Extra pip
# arguments, such as '.[test]', can be given through CONFIGDRIVE_EXTRAS.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# compat mode: a plain .pth path entry; the default import-hook finder costs
# ~30 ms at every interpreter start, which the CLI pays on each run.
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --config-settings editable_mode=compat -e ".${CONFIGDRIVE_EXTRAS:-}"
