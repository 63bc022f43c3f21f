#!/usr/bin/env bash
# Install what buildtool needs on a fresh machine, into ./.venv.
#   scripts/bootstrap.sh     # system packages (if missing, via apt) + .venv with buildtool[dev]
# Needed: a C/C++ compiler and Python's venv. Recommended: ccache.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v c++ >/dev/null 2>&1 || need+=(build-essential)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v ccache >/dev/null 2>&1 || need+=(ccache)
if [ "${#need[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo_cmd=()
        [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
        echo "bootstrap: installing ${need[*]}"
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" \
            >/dev/null
    elif [ "${need[*]}" = "ccache" ]; then
        echo "bootstrap: ccache not found; builds work without it, rebuilds are slower"
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
echo "bootstrap: ready: .venv/bin/buildtool $(.venv/bin/buildtool --version | awk '{print $NF}')"
