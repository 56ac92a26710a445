#!/usr/bin/env bash
# Installs the Debian packages listed in scripts/debian-packages.txt (the
# tools the tests drive for real). Skips apt when all are present already.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t pkgs < <(grep -Ev '^\s*(#|$)' scripts/debian-packages.txt)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
