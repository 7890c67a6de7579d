#!/usr/bin/env bash
# The curl engine against its floor (issue 12): requests per client CPU-second of wrk, of the
# bare libcurl loop (tests/bench/curl_loop.cpp) with libcurl's cheapest settings, of the same
# loop with what the engine asks of curl for the bench scenario (its header lines, a header
# callback, Accept-Encoding, per-request options, a timeout), and of Stampede's curl engine, in
# rounds, each tool's ratio to the wrk run of its round. On a shared machine the rounds show
# the spread.
#
#   bash tests/bench/curl_floor.sh [BUILD_DIR]        (default BUILD_DIR: build/)
#
# nginx (one worker, `GET /` answers "ok", access log off) is pinned to SERVER_CPU, every client
# to CLIENT_CPU, as in throughput.sh. Environment: POINTS ["50 1000"], ROUNDS [3],
# DURATION [5] seconds, TOOLS ["wrk loop loop-engine stampede-curl"], SHARD [64] (the loop's
# easy handles per multi handle, as the engine's kShardSize), SERVER_CPU [0], CLIENT_CPU [1].
# Needs wrk, nginx, GNU time, taskset. Not part of `make test`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/benchlib.sh
source "$HERE/benchlib.sh"
SOURCE=$(cd "$HERE/../.." && pwd)
BUILD_DIR=$(realpath -m "${1:-$SOURCE/build}")
POINTS=${POINTS-50 1000}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
TOOLS=${TOOLS-wrk loop loop-engine stampede-curl}
SHARD=${SHARD:-64}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
LOOP="$BUILD_DIR/bin/curl_loop"
MASTER="$BUILD_DIR/bin/master"

die() { printf 'curl_floor: %s\n' "$*" >&2; exit 1; }
for tool in wrk taskset /usr/bin/time /usr/sbin/nginx python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (apt-get install wrk nginx-light time)"
done
[[ -x $LOOP && -x $MASTER ]] || die "$LOOP or $MASTER not found: build first"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

WORK=$(mktemp -d /tmp/stampede-curl-floor.XXXXXX)
NGINX_PID=""
cleanup() {
  [[ -n $NGINX_PID ]] && kill -TERM "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/nginx/tmp"
PORT=$(python3 "$HERE/benchlib.py" free-port)
user_line=""
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$WORK/nginx/nginx.conf" <<EOF
$user_line
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $(($(ulimit -n) - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  default_type text/plain;
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
timeout -s QUIT 3600 taskset -c "$SERVER_CPU" /usr/sbin/nginx -p "$WORK/nginx/" \
  -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' </dev/null \
  >/dev/null 2>&1 &
NGINX_PID=$!
wait_for_port "$PORT" || die "nginx did not listen on 127.0.0.1:$PORT within 10 s"
URL="http://127.0.0.1:$PORT/"

scenario() { # FILE USERS: throughput.sh's scenario, curl engine, no ramp
  cat >"$1" <<EOF
name: curl-floor-$2
target: http://127.0.0.1:$PORT
load:
  users: $2
  duration: ${DURATION}s
http:
  engine: curl
  timeout: 10s
  keep_alive: true
$(bench_request_yaml)
EOF
}

run() { # TOOL CONNS: prints "requests cpu_s"
  local tool=$1 n=$2 dir="$WORK/run" cmd=()
  rm -rf "$dir"
  mkdir -p "$dir"
  case $tool in
    wrk) cmd=(wrk -t1 -c"$n" -d"${DURATION}s" --timeout 10s "$URL") ;;
    loop) cmd=("$LOOP" "$URL" --conns "$n" --duration "$DURATION" --shard "$SHARD") ;;
    loop-engine)
      cmd=("$LOOP" "$URL" --conns "$n" --duration "$DURATION" --shard "$SHARD" --headers
        --header-cb --accept-encoding --per-request --timeout-ms 10000) ;;
    stampede-curl)
      scenario "$dir/scenario.yaml" "$n"
      cmd=("$MASTER" --threads 1 --quiet --out "$dir/out" "$dir/scenario.yaml") ;;
    *) die "unknown tool $tool" ;;
  esac
  timeout -k 10 $((DURATION + 60)) taskset -c "$CLIENT_CPU" /usr/bin/time -o "$dir/time" \
    -f "%U %S" "${cmd[@]}" </dev/null >"$dir/stdout" 2>"$dir/stderr" ||
    die "$tool at $n failed: $(tail -n 3 "$dir/stderr")"
  local requests
  case $tool in
    wrk) requests=$(awk '/requests in/ { print $1 }' "$dir/stdout") ;;
    loop*) requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' "$dir/stdout") ;;
    stampede-curl)
      requests=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['requests'])" \
        "$dir/out/report.json") ;;
  esac
  echo "$requests $(awk '{ print $1 + $2 }' "$dir/time")"
}

printf '%-6s %-5s %-14s %10s %7s %12s %8s\n' conns round tool requests cpu_s req_per_cpu vs_wrk
for n in $POINTS; do
  for ((round = 1; round <= ROUNDS; round++)); do
    wrk_rate=""
    for tool in $TOOLS; do
      read -r requests cpu <<<"$(run "$tool" "$n")"
      rate=$(awk -v r="$requests" -v c="$cpu" 'BEGIN { printf "%.0f", (c > 0) ? r / c : 0 }')
      [[ $tool == wrk ]] && wrk_rate=$rate
      ratio=$(awk -v a="$rate" -v b="${wrk_rate:-0}" 'BEGIN { if ((b) > 0) printf "%.2f", a / b; else print "-" }')
      printf '%-6s %-5s %-14s %10s %7s %12s %8s\n' "$n" "$round" "$tool" "$requests" "$cpu" "$rate" "$ratio"
      sleep 1
    done
  done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
