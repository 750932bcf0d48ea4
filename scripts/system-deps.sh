#!/usr/bin/env bash
# Install the Debian packages hvbench needs (lists given as arguments, default
# packages/debian.txt). As root: apt-get installs what is
# missing. Otherwise: print the exact command to run and fail.
set -euo pipefail
cd "$(dirname "$0")/.."

lists=("$@")
[[ ${#lists[@]} -eq 0 ]] && lists=(packages/debian.txt)
mapfile -t wanted < <(cat "${lists[@]}" | grep -v '^\s*#' | tr -s ' \t' '\n' | sed '/^$/d')
missing=()
for pkg in "${wanted[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -ne 0 ]]; then
    echo "hvbench: missing Debian packages; run as root:" >&2
    echo "  apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
