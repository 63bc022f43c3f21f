#!/usr/bin/env bash
# A build environment for `buildtool build --build-env DIR`: the root file system of an older
# Debian, so the binaries built in it need only its glibc and libstdc++ (Debian 11
# "bullseye": glibc 2.31, GLIBCXX_3.4.28). recipes/build-env/Dockerfile is the same
# environment as a container image (the CI workflow's).
#   scripts/build-root.sh [SUITE] DIR
# The compilers are bullseye's clang 16 (cc/c++ in /usr/local/bin) with its libstdc++ 10:
# gcc 10 cannot compile ggml's alderlake variant (-mavxvnni needs gcc 11). cmake >= 3.21 comes
# from PyPI (bullseye's is 3.18), downloaded by this machine's Python and unpacked into
# DIR/usr/local. Needs root and debootstrap. DEBIAN_MIRROR overrides the mirror, PYTHON the
# Python that downloads cmake, CLANG the clang version.
set -euo pipefail
if [ $# -eq 1 ]; then suite=bullseye; dir=$1; else suite=${1:?suite}; dir=${2:?directory}; fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}
clang=${CLANG:-16}
case "$(uname -m)" in
    x86_64) wheel_platform=manylinux2014_x86_64 ;;
    aarch64) wheel_platform=manylinux2014_aarch64 ;;
    *) echo "build-root: no cmake wheel for $(uname -m)" >&2; exit 2 ;;
esac

if [ -x "$dir/usr/local/bin/cmake" ] && [ -x "$dir/usr/bin/clang++-$clang" ] &&
    [ -L "$dir/usr/local/bin/c++" ]; then
    echo "build-root: $dir exists"
    exit 0
fi
if [ -e "$dir" ]; then
    echo "build-root: $dir exists but is not a build environment: remove it first" >&2
    exit 2
fi
# made under another name and renamed when complete: an interrupted run leaves no half root
final=$dir
dir="$final.partial"
rm -rf "$dir"
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
echo "build-root: debootstrap --variant=minbase $suite $final ($mirror)"
debootstrap --variant=minbase --include="clang-$clang,g++,make,ninja-build,ccache" \
    "$suite" "$dir" "$mirror" >/dev/null
ln -sf "/usr/bin/clang-$clang" "$dir/usr/local/bin/cc"
ln -sf "/usr/bin/clang++-$clang" "$dir/usr/local/bin/c++"
rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
"$python" -m pip download --quiet --no-deps --only-binary=:all: --platform "$wheel_platform" \
    --python-version 3.9 "cmake>=3.21,<4" -d "$wheels"
"$python" - "$wheels"/cmake-*.whl "$dir/usr/local" <<'PY'
import stat, sys, zipfile
from pathlib import Path
wheel, dest = sys.argv[1], Path(sys.argv[2])
prefix = "cmake/data/"
with zipfile.ZipFile(wheel) as zf:
    for info in zf.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        rel = Path(info.filename[len(prefix):])
        if rel.is_absolute() or ".." in rel.parts:
            raise SystemExit(f"unsafe path in {wheel}: {info.filename}")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zf.read(info))
        if rel.parts[0] == "bin":
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
mv "$dir" "$final"
echo "build-root: $final ($(chroot "$final" /usr/local/bin/cmake --version | head -n 1), \
$(chroot "$final" /usr/local/bin/c++ --version | head -n 1))"
