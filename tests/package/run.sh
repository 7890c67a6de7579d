#!/usr/bin/env bash
# `make test-package`: the package, image and Kubernetes tests (README "Installing"). Not part
# of `make test`: they need root, install Debian packages (help2man, lintian, podman) and npm
# packages (into BUILD_DIR/k8s-validate), install and purge the .deb on this machine, and chroot
# into the image's root. About a minute in all. Traffic goes to 127.0.0.1 only.
#
#   bash tests/package/run.sh BUILD_DIR [k8s|image|deb]...
set -uo pipefail
if [[ $# -lt 1 ]]; then
  echo "usage: bash tests/package/run.sh BUILD_DIR [k8s|image|deb]..." >&2
  exit 2
fi
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$1
shift
tests=("${@:-k8s image deb}")
read -r -a tests <<<"${tests[*]}"
passed=0 failed=0
for name in "${tests[@]}"; do
  echo "== tests/package/test_$name.py"
  if python3 "$here/test_$name.py" "$build"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "!! test_$name failed"
  fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
