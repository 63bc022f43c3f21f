#!/usr/bin/env bash
# A Debian base image made locally, for hosts that cannot pull from a registry: debootstrap
# writes a minimal root file system, buildah imports it. Images name it through their
# BUILD_IMAGE / RUNTIME_IMAGE build arguments:
#   scripts/local-base-image.sh [SUITE] [NAME]
#   buildtool build --target cpu --artifact image \
#       --build-arg BUILD_IMAGE=localhost/debian:bookworm-minbase \
#       --build-arg RUNTIME_IMAGE=localhost/debian:bookworm-minbase
# Needs root, debootstrap and buildah. DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
suite=${1:-bookworm}
name=${2:-localhost/debian:${suite}-minbase}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if buildah inspect --type image "$name" >/dev/null 2>&1; then
    echo "local-base-image: $name exists"
    exit 0
fi
rootfs=$(mktemp -d)
container=""
cleanup() {
    [ -z "$container" ] || buildah rm "$container" >/dev/null 2>&1 || true
    rm -rf "$rootfs"
}
trap cleanup EXIT
echo "local-base-image: debootstrap --variant=minbase $suite ($mirror)"
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
container=$(buildah from scratch)
buildah add --quiet "$container" "$rootfs" / >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd /bin/bash --label "org.opencontainers.image.description=debootstrap --variant=minbase $suite" \
    "$container"
buildah commit --quiet --rm "$container" "$name" >/dev/null
container=""
echo "local-base-image: $name"
