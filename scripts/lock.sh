#!/usr/bin/env bash
# Refreshes the lock files from pyproject.toml: every transitive dependency
# pinned with its hashes, for CPython 3.11 on x86_64 Linux (the machines CI
# and the README target). Run it after changing a dependency range, or to
# take new upstream releases; commit the result once `bash scripts/test.sh`
# passes with it.
#
#   requirements.txt          the project
#   requirements-libvirt.txt  + the libvirt extra
#   requirements-test.txt     + the test extra (which includes libvirt and postgres)
#   requirements-build.txt    the build backend ([build-system] requires)
#   tests/pyyaml-oldest.txt   PyYAML at the lower bound pyproject.toml admits
#   tests/readers.txt         the third-party metadata readers (tests/readers.in)
#                             that tests/test_readers_*.py install in a venv of their own
#
# uv only resolves (pinned here, in a throw-away venv); the files it writes
# are pip-tools' compiled-requirements format, which plain pip installs with
# --require-hashes, so set-up needs nothing but the venv's own pip.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
python3 -m venv "$tool"
"$tool/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
python3 - "$tool" <<'PY'
import re, sys, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
with open(f"{sys.argv[1]}/build.in", "w") as out:
    out.write("\n".join(project["build-system"]["requires"]) + "\n")
[pyyaml] = [d for d in project["project"]["dependencies"] if d.lower().startswith("pyyaml")]
with open(f"{sys.argv[1]}/pyyaml-oldest.in", "w") as out:
    out.write("PyYAML==" + re.search(r">=\s*([\w.]+)", pyyaml).group(1) + "\n")
PY
compile() {  # compile OUTPUT [uv args and inputs...]
    local out=$1; shift
    "$tool/bin/uv" pip compile --quiet --upgrade --generate-hashes --python-version 3.11 \
        --python-platform x86_64-unknown-linux-gnu --custom-compile-command "bash scripts/lock.sh" \
        "$@" -o "$out"
}
# The widest set first; the others are held to its versions, so every lock
# file names the same release of a package. The build backend is in each of
# them (set-up installs requirements-build.txt first, then builds sdists and
# the editable install against it, never against an unpinned download).
# Inputs that are not files of ours come on stdin ("-"), so that no temporary
# path is written into the files' annotations.
compile requirements-test.txt --extra test pyproject.toml - < "$tool/build.in"
compile requirements-libvirt.txt --extra libvirt -c requirements-test.txt pyproject.toml - < "$tool/build.in"
compile requirements.txt -c requirements-test.txt pyproject.toml - < "$tool/build.in"
compile requirements-build.txt -c requirements-test.txt - < "$tool/build.in"
compile tests/pyyaml-oldest.txt - < "$tool/pyyaml-oldest.in"
# Not held to the project's versions: the readers run in their own venv, as
# a guest would install them.
compile tests/readers.txt tests/readers.in
