#!/usr/bin/env bash
# Called by `cmake --install` / CPack (CMakeLists.txt, "Install and Debian package"): writes
# the man pages, made by help2man from the binaries' --help and --version, and the gzipped
# changelog into the staging root.
#
#   bash deploy/debian/make-docs.sh PREFIX VERSION MASTER_BINARY WORKER_BINARY
set -euo pipefail
if [[ $# -ne 4 ]]; then
  echo "usage: make-docs.sh PREFIX VERSION MASTER_BINARY WORKER_BINARY" >&2
  exit 2
fi
prefix=$1 version=$2 master=$3 worker=$4
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v help2man >/dev/null; then
  echo "make-docs.sh: help2man not found: apt-get install help2man (it makes the man pages)" >&2
  exit 1
fi
mkdir -p "$prefix/share/man/man1" "$prefix/share/doc/stampede"
for binary in "$prefix/bin/stampede-master" "$prefix/bin/stampede-worker"; do
  strip --strip-unneeded --remove-section=.comment --remove-section=.note "$binary"
done

# $1 installed name, $2 binary, $3 the name the binary calls itself, $4 one-line summary.
man_page() {
  local page="$prefix/share/man/man1/$1.1"
  help2man --no-info --section=1 --version-string="$version" --name="$4" \
    --source="Stampede $version" --manual="Stampede" "$2" >"$page.in"
  # The binary's --help says "master"/"worker"; the installed command has the long name.
  sed -e "s/^\.TH [^ ]*/.TH ${1^^}/" \
    -e "s/^$3 \\\\- /$1 \\\\- /" \
    -e "s/\\b\\(usage: \\|^ *\\)$3 /\\1$1 /" \
    -e "s/\\\\fB$3\\\\fR/\\\\fB$1\\\\fR/g" \
    -e "s/^\\(\\.\\(B\\|IP\\) *\\)$3\$/\\1$1/" \
    "$page.in" >"$page"
  rm -f "$page.in"
  gzip -9nf "$page"
}
man_page stampede-master "$master" master "run a distributed HTTP load test"
man_page stampede-worker "$worker" worker "Stampede load generator worker daemon"

gzip -9nc "$here/changelog" >"$prefix/share/doc/stampede/changelog.gz"
