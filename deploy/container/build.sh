#!/usr/bin/env bash
# Build the edge-agent image (deploy/container/Containerfile) with podman or buildah.
#
#   deploy/container/build.sh [--tag TAG] [--extras EXTRAS] [--base IMAGE | --debootstrap CACHE]
#
# The build context is a temporary directory holding the Containerfile and the wheel this
# repository builds (`pip wheel --no-deps .`), so nothing else of the checkout reaches the image.
# --base IMAGE: a Debian bookworm image (default docker.io/library/debian:bookworm-slim).
# --debootstrap CACHE: no registry needed; make the base from Debian's packages with debootstrap
#   (root only), from the mirror apt uses here (DEBIAN_MIRROR overrides), keep the root
#   filesystem as a tarball in CACHE for the next build, and import it as the base.
# EDGE_AGENT_BUILDER=podman|buildah picks the tool (default: podman if installed, else buildah).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
tag=localhost/edge-agent:latest
extras=agent
base=docker.io/library/debian:bookworm-slim
cache=""
while [ $# -gt 0 ]; do
    case "$1" in
        --tag|--extras|--base|--debootstrap)
            if [ $# -lt 2 ]; then echo "build.sh: $1 needs a value; see build.sh --help" >&2; exit 2; fi ;;
    esac
    case "$1" in
        --tag) tag=$2; shift 2 ;;
        --extras) extras=$2; shift 2 ;;
        --base) base=$2; shift 2 ;;
        --debootstrap) cache=$2; shift 2 ;;
        -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1; see build.sh --help" >&2; exit 2 ;;
    esac
done

builder=${EDGE_AGENT_BUILDER:-}
if [ -z "$builder" ]; then
    if command -v podman >/dev/null; then builder=podman
    elif command -v buildah >/dev/null; then builder=buildah
    else
        echo "build.sh: neither podman nor buildah is installed (apt-get install podman)" >&2
        exit 2
    fi
fi

started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/context"

# The wheel, built the way users build it; its version labels the image.
"${PYTHON:-python3}" -m pip wheel --quiet --no-deps "$repo" -w "$work/context"
wheel=$(basename "$work"/context/*.whl)
version=$(echo "$wheel" | cut -d- -f2)
cp "$repo/deploy/container/Containerfile" "$work/context/"

# The Debian mirror apt uses on this machine (deb822 or one-line sources), not its security
# archive; deb.debian.org when there is none.
apt_mirror() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
        2>/dev/null | grep -oE '(https?|file)://[^ ]*/debian/?( |$)' | head -n 1 | tr -d ' ' || true
}

if [ -n "$cache" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "build.sh: --debootstrap needs root (debootstrap creates device nodes and owners)" >&2
        exit 2
    fi
    mkdir -p "$cache"
    rootfs_tar="$cache/debian-bookworm-minbase-python3.tar"
    if [ ! -s "$rootfs_tar" ]; then
        mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
        mirror=${mirror:-http://deb.debian.org/debian}
        echo "build.sh: debootstrap bookworm from $mirror" >&2
        debootstrap --variant=minbase --include=python3,python3-venv \
            bookworm "$work/rootfs" "$mirror" > "$work/debootstrap.log" 2>&1 || {
            tail -n 20 "$work/debootstrap.log" >&2
            echo "build.sh: debootstrap failed (log above)" >&2
            exit 1
        }
        # What an image does not need: downloaded packages, package lists, docs, translations.
        rm -rf "$work"/rootfs/var/cache/apt/* "$work"/rootfs/var/lib/apt/lists/* \
            "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* \
            "$work"/rootfs/usr/share/info/* "$work"/rootfs/usr/share/locale/*
        # The image brings no name server; the container runtime mounts its own resolv.conf.
        : > "$work/rootfs/etc/resolv.conf"
        tar --numeric-owner --xattrs -C "$work/rootfs" -cf "$rootfs_tar.part" .
        mv "$rootfs_tar.part" "$rootfs_tar"  # atomic: a cut-off run leaves no half tarball
        rm -rf "$work/rootfs"
    fi
    base=localhost/edge-agent-base:bookworm
    if [ "$builder" = podman ]; then
        podman import --quiet "$rootfs_tar" "$base" >/dev/null
    else
        ctr=$(buildah from scratch)
        mnt=$(buildah mount "$ctr")
        tar --numeric-owner --xattrs -C "$mnt" -xf "$rootfs_tar"
        buildah umount "$ctr" >/dev/null
        buildah commit --quiet "$ctr" "$base" >/dev/null
        buildah rm "$ctr" >/dev/null
    fi
fi

# The CA bundle the host's pip trusts (PIP_CERT, pip's cert setting, else the system's), as a
# build secret: pip in the build then gets through the same TLS-inspecting proxy, if any.
pip_ca=${PIP_CERT:-$("${PYTHON:-python3}" -m pip config get global.cert 2>/dev/null || true)}
pip_ca=${pip_ca:-/etc/ssl/certs/ca-certificates.crt}
secret=()
if [ -s "$pip_ca" ]; then secret=(--secret "id=pip-ca,src=$pip_ca"); fi

# --format docker: the OCI image format has no HEALTHCHECK; --network host: pip reaches the
# package index the way the host does; --isolation chroot: RUN works where the machine gives
# the runtime no namespaces to create (a container in a container, CI); --force-rm: a failed
# step leaves no working container behind.
build_args=("${secret[@]}" --format docker --network host --isolation chroot --force-rm
    --build-arg "BASE=$base" --build-arg "EXTRAS=$extras" --build-arg "VERSION=$version"
    --tag "$tag" --file "$work/context/Containerfile" "$work/context")
if [ "$builder" = podman ]; then
    podman build --quiet "${build_args[@]}" >/dev/null
else
    buildah build --quiet "${build_args[@]}" >/dev/null
fi

size=$("$builder" images --format '{{.Size}}' "$tag" | head -n 1)
echo "build.sh: built $tag ($wheel[$extras], $size) with $builder in $(($(date +%s) - started)) s"
