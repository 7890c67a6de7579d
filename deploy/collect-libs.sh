#!/usr/bin/env bash
# Stages the root filesystem of the FROM-scratch image (deploy/Containerfile): the two binaries
# as /usr/bin/stampede-master and /usr/bin/stampede-worker (stripped), exactly the shared
# libraries the ELF loader maps for them (ldd: DT_NEEDED, transitively, and the loader itself),
# each at the path the loader resolves it to, plus the image's /etc (passwd, group with the
# non-root user stampede, uid 10001), /etc/nsswitch.conf, the CA bundle when this host has one
# (for https targets), and an empty /tmp (mode 1777).
#
#   bash deploy/collect-libs.sh ROOT MASTER_BINARY WORKER_BINARY
#
# ROOT is created (it must not exist, or be empty). Lists what it copied on stdout.
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: bash deploy/collect-libs.sh ROOT MASTER_BINARY WORKER_BINARY" >&2
  exit 2
fi
root=$1 master=$2 worker=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
for binary in "$master" "$worker"; do
  [[ -x "$binary" ]] || { echo "collect-libs.sh: $binary is not an executable" >&2; exit 2; }
done
if [[ -e "$root" && -n "$(ls -A "$root")" ]]; then
  echo "collect-libs.sh: $root exists and is not empty" >&2
  exit 2
fi
mkdir -p "$root/usr/bin" "$root/etc" "$root/tmp"
chmod 1777 "$root/tmp"

install -m 0755 "$master" "$root/usr/bin/stampede-master"
install -m 0755 "$worker" "$root/usr/bin/stampede-worker"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  "$root/usr/bin/stampede-master" "$root/usr/bin/stampede-worker"

# ldd lines: "name => /path (addr)", "/lib64/ld-linux-x86-64.so.2 (addr)", "linux-vdso.so.1
# (addr)" (the kernel's, no file). A "not found" is fatal: the image would not start.
libraries=$(for binary in "$master" "$worker"; do
  out=$(ldd "$binary")
  if grep -q 'not found' <<<"$out"; then
    echo "collect-libs.sh: $binary: $(grep 'not found' <<<"$out" | head -1)" >&2
    exit 1
  fi
  awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
done | sort -u)
for library in $libraries; do
  mkdir -p "$root$(dirname "$library")"
  cp -L "$library" "$root$library"   # the file itself, not the soname link
  chmod 0755 "$root$library"
  echo "$library"
done

install -m 0644 "$here/image/passwd" "$here/image/group" "$here/image/nsswitch.conf" "$root/etc/"
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
  mkdir -p "$root/etc/ssl/certs"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
fi
