#!/usr/bin/env bash
# Install what buildtool needs on a fresh Debian/Ubuntu machine, into ./.venv.
#   scripts/bootstrap.sh            # system packages (if missing) + .venv with buildtool[test]
# System packages: a C/C++ compiler, python3-venv, ccache (optional but recommended).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v g++ >/dev/null 2>&1 || need+=(build-essential)
command -v ccache >/dev/null 2>&1 || need+=(ccache)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo_cmd=()
        [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
        echo "bootstrap: installing ${need[*]}"
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}"
    else
        echo "bootstrap: please install: ${need[*]}" >&2
        exit 1
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev]'
echo "bootstrap: ready — .venv/bin/buildtool $(.venv/bin/buildtool --version | awk '{print $NF}')"
