#!/usr/bin/env bash
# Client instructions per request, counted by callgrind: a repeatable figure on a noisy shared
# machine, where wall-clock and CPU-second figures swing with whatever else runs.
#
#   bash tests/bench/callgrind_requests.sh [BUILD_DIR]     (default BUILD_DIR: build/)
#
# Starts its own nginx on 127.0.0.1 (as throughput.sh: one worker, access log off, `GET /`
# answers "ok"), then runs `master --threads 1` under `valgrind --tool=callgrind` on the bench
# scenario (templated header, expect: {status: 200}) with USERS virtual users and a fixed
# ITERATIONS budget, and prints the instructions the client executed, the requests it completed
# (report.json totals.requests) and their ratio. The fixed start-up cost is measured by a run
# of one iteration and subtracted (ir_per_req_net). The callgrind output stays in
# BUILD_DIR/bench/callgrind/ for callgrind_annotate.
#
# Environment: USERS [1000], ITERATIONS [30000], ENGINE [beast; curl: http.engine], CACHE_SIM [unset; 1: also simulate the caches
# (callgrind --cache-sim=yes) and print first- and last-level data misses per request],
# SIM_LL [unset: this machine's; else size,associativity,line of the simulated last level].
# Not part of `make test`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/benchlib.sh
source "$HERE/benchlib.sh"
SOURCE=$(cd "$HERE/../.." && pwd)
BUILD_DIR=$(realpath -m "${1:-$SOURCE/build}")
MASTER="$BUILD_DIR/bin/master"
USERS=${USERS:-1000}
ITERATIONS=${ITERATIONS:-30000}
ENGINE=${ENGINE:-beast}
OUT="$BUILD_DIR/bench/callgrind"
SIM=()
[[ -n ${CACHE_SIM:-} ]] && SIM=(--cache-sim=yes)
# A last-level cache of another size (size,associativity,line), e.g. 1048576,16,64: what is
# left of a shared cache on a busy machine.
[[ -n ${CACHE_SIM:-} && -n ${SIM_LL:-} ]] && SIM+=(--LL="$SIM_LL")

die() { printf 'callgrind_requests: %s\n' "$*" >&2; exit 1; }
for tool in valgrind callgrind_annotate /usr/sbin/nginx python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install valgrind nginx-light)"
done
[[ -x $MASTER ]] || die "$MASTER not found: build first"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
((USERS + 100 <= $(ulimit -n))) || die "open-file limit $(ulimit -n) is below USERS + 100"

WORK=$(mktemp -d /tmp/stampede-callgrind.XXXXXX)
NGINX_PID=""
cleanup() {
  [[ -n $NGINX_PID ]] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$OUT" "$WORK/nginx/tmp"

PORT=$(python3 "$HERE/benchlib.py" free-port)
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$user_line
worker_processes 1;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $((USERS + 200)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 600s;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$PORT backlog=4096;
    location = / { return 200 "ok\n"; }
  }
}
EOF
timeout -s QUIT 3600 /usr/sbin/nginx -p "$WORK/nginx/" -e "$WORK/nginx/error.log" \
  -c "$WORK/nginx/nginx.conf" -g 'daemon off;' </dev/null >/dev/null 2>&1 &
NGINX_PID=$!
wait_for_port "$PORT" || die "nginx did not listen on 127.0.0.1:$PORT within 10 s"

run() { # NAME ITERATIONS: prints "instructions requests"
  local name=$1 iterations=$2 dir="$WORK/$1"
  mkdir -p "$dir"
  cat >"$dir/scenario.yaml" <<EOF
name: callgrind-$name
target: http://127.0.0.1:$PORT
load:
  users: $USERS
  duration: 600s
  iterations: $iterations
http:
  engine: $ENGINE
  timeout: 60s
  keep_alive: true
$(bench_request_yaml)
EOF
  timeout 1800 valgrind --log-file="$dir/valgrind.log" --tool=callgrind "${SIM[@]}" --callgrind-out-file="$OUT/$name.%p.out" \
    "$MASTER" --threads 1 --connect-timeout 120s --heartbeat-timeout 60s --quiet --out "$dir/out" "$dir/scenario.yaml" \
    >"$dir/stdout" 2>"$dir/stderr" || die "$name run failed: $(cat "$dir/stderr" "$dir/stdout" | tail -n 5)"
  local ir requests
  # summary: Ir, and with the cache simulated Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
  ir=$(grep -h '^summary:' "$OUT/$name".*.out | awk '{ s += $2 } END { print s }')
  if [[ -n ${CACHE_SIM:-} ]]; then
    grep -h '^summary:' "$OUT/$name".*.out |
      awk '{ m += $9 + $10; d += $6 + $7 } END { print m, d }' >"$dir/misses"
  fi
  requests=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['requests'])" \
    "$dir/out/report.json")
  echo "$ir $requests"
}

rm -f "$OUT"/base.*.out "$OUT"/load.*.out
read -r base_ir base_req <<<"$(run base 1)"
read -r load_ir load_req <<<"$(run load "$ITERATIONS")"
[[ -n $base_ir && -n $load_ir ]] || exit 1
python3 - "$USERS" "$base_ir" "$base_req" "$load_ir" "$load_req" "$WORK/load/misses" "$ENGINE" <<'EOF'
import sys
users, base_ir, base_req, load_ir, load_req = sys.argv[1], *map(int, sys.argv[2:6])
misses = ""
try:
    ll, d1 = map(int, open(sys.argv[6]).read().split())
    misses = f" d1_miss_per_req={d1 / load_req:.1f} ll_miss_per_req={ll / load_req:.1f}"
except (IndexError, OSError, ValueError):
    pass
print(f"engine={sys.argv[7]} users={users} requests={load_req} instructions={load_ir}{misses} "
      f"ir_per_req={load_ir / load_req:.0f} "
      f"ir_per_req_net={(load_ir - base_ir) / (load_req - base_req):.0f} "
      f"(start-up run: {base_ir} instructions, {base_req} requests)")
EOF
