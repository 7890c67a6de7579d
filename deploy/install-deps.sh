#!/usr/bin/env bash
# Installs the Debian 12 packages Stampede needs to build, test and run the demo.
# Idempotent: on a ready machine it checks with dpkg and installs nothing.
set -euo pipefail

# Build: compiler, CMake + Ninja, and every library the code links.
build_packages=(
  g++ cmake ninja-build pkg-config
  libboost1.74-dev libboost-program-options1.74-dev
  libzmq3-dev cppzmq-dev
  libprotobuf-dev protobuf-compiler
  libcurl4-openssl-dev libssl-dev zlib1g-dev
  libnghttp2-dev
  libyaml-cpp-dev libfmt-dev nlohmann-json3-dev
  catch2
  # Chart.js, compiled into the master for report.html (master/CMakeLists.txt)
  libjs-chart.js
)
# Test and demo: the real nginx the tests and demo load, python3 for report checks,
# python3-yaml with python3-jsonschema for the scenario schema test (tests/e2e/test_schema.py),
# the openssl tool that makes tests/e2e/test_http2.py its certificate, xmllint for junit.xml
# against tests/junit.xsd, headless chromium that loads report.html (tests/e2e/test_report_html.py),
# a real prometheus that scrapes --metrics-listen (tests/e2e/test_metrics.py),
# nghttp2-client for h2load, the reference tests/bench/h2.sh compares the HTTP/2 engine with, and
# activemq (a JMS broker speaking STOMP) and python3-stomp: the messaging tests (tests/e2e/broker.py,
# tests/e2e/test_messaging.py) start their own broker and check it with an independent client;
# tests/e2e/test_messaging_faults.py makes its TLS certificates with openssl and the keytool of
# activemq's JRE.
test_packages=(nginx-light python3 python3-yaml python3-jsonschema procps iproute2 openssl
  libxml2-utils chromium prometheus nghttp2-client activemq python3-stomp)
# Fuzzing only (`make fuzz`, which runs `install-deps.sh --fuzz`): clang with libFuzzer and the
# sanitizer runtimes (libclang-rt-14-dev holds libclang_rt.fuzzer). The normal build uses g++.
fuzz_packages=()
if [[ "${1:-}" == "--fuzz" ]]; then
  fuzz_packages=(clang-14 libclang-rt-14-dev)
fi

missing=()
for p in "${build_packages[@]}" "${test_packages[@]}" "${fuzz_packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts nginx and prometheus on install; the tests and demo run their own instances.
for service in nginx prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
    "${sudo_cmd[@]}" systemctl stop "$service" || true
  fi
done
