#!/usr/bin/env bash
# Build deploy/container/Containerfile with buildah, without a daemon: vfs storage and chroot isolation need no
# overlay filesystem, user namespace or cgroup, so it builds inside a container or a CI job too.
#
#   tools/build-image.sh [--debian-base] [TAG]        (TAG defaults to localhost/celerybeat-redis:dev)
#
# --debian-base: where no registry can be pulled from, make the base from Debian's packages (mmdebstrap:
# python3, python3-venv) instead of the Containerfile's default PYTHON_IMAGE. The host's pip configuration and CA
# certificates, where there are, are lent to the build so that pip reaches the index the host reaches.
# Prints the image's name last. tests/scenarios/test_deploying.py runs the image named in CELERYBEATREDIS_TEST_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."

debian_base=0
if [ "${1:-}" = "--debian-base" ]; then debian_base=1; shift; fi
tag="${1:-localhost/celerybeat-redis:dev}"
buildah=(buildah --storage-driver vfs)
args=(--format docker --isolation chroot -f deploy/container/Containerfile -t "$tag")

if [ "$debian_base" = 1 ]; then
    base=localhost/celerybeat-redis-base:bookworm
    if ! "${buildah[@]}" inspect --type image "$base" >/dev/null 2>&1; then
        rootfs="$(mktemp -d)"
        trap 'rm -rf "$rootfs"' EXIT
        mmdebstrap --quiet --variant=apt --include=python3,python3-venv,passwd bookworm "$rootfs/base.tar"
        container="$("${buildah[@]}" from scratch)"
        "${buildah[@]}" add "$container" "$rootfs/base.tar" / >/dev/null
        "${buildah[@]}" commit --quiet --rm "$container" "$base" >/dev/null
    fi
    args+=(--build-arg "PYTHON_IMAGE=$base")
fi
for lent in /etc/pip.conf /etc/xdg/pip /etc/ssl/certs; do
    if [ -e "$lent" ]; then args+=(--volume "$lent:$lent:ro"); fi
done

"${buildah[@]}" bud --quiet "${args[@]}" . >/dev/null
echo "$tag"
