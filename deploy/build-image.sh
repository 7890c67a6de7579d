#!/usr/bin/env bash
# Builds the FROM-scratch image (deploy/Containerfile) with podman from a build directory:
# stages BUILD_DIR/image/rootfs with deploy/collect-libs.sh, then `podman build`.
#
#   bash deploy/build-image.sh BUILD_DIR [TAG]      # TAG defaults to stampede:VERSION
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: bash deploy/build-image.sh BUILD_DIR [TAG]" >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "$1" && pwd)
version=$(sed -n 's/^project(stampede VERSION \([0-9.]*\).*/\1/p' "$here/../CMakeLists.txt")
tag=${2:-stampede:$version}
command -v podman >/dev/null || { echo "build-image.sh: podman not found (apt-get install podman)" >&2; exit 1; }
rm -rf "$build/image"
mkdir -p "$build/image"
bash "$here/collect-libs.sh" "$build/image/rootfs" "$build/bin/master" "$build/bin/worker" >"$build/image/libraries.txt"
podman build --quiet -f "$here/Containerfile" -t "$tag" "$build/image"
