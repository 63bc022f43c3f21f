#!/usr/bin/env bash
# Install what buildtool needs on a fresh machine, into ./.venv.
#   scripts/bootstrap.sh     # system packages (if missing, via apt) + .venv with buildtool[dev]
# Needed: a C/C++ compiler and Python's venv. Recommended: ccache, and qemu-user (the smoke
# runs artifacts on the emulated CPU models their claim covers).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v c++ >/dev/null 2>&1 || need+=(build-essential)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
command -v ccache >/dev/null 2>&1 || need+=(ccache)
if [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ]; then
    command -v qemu-x86_64 >/dev/null 2>&1 || need+=(qemu-user)
fi
if [ "${#need[@]}" -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        sudo_cmd=()
        [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
        echo "bootstrap: installing ${need[*]}"
        "${sudo_cmd[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" \
            >/dev/null
    elif [ -z "$(printf '%s\n' "${need[@]}" | grep -vx -e ccache -e qemu-user)" ]; then
        echo "bootstrap: ${need[*]} not found; builds work without them (rebuilds are slower" \
             "without ccache; without qemu-user the smoke skips emulated CPU models)"
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
