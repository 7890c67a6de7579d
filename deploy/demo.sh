#!/usr/bin/env bash
# make demo: loads a real nginx with config/examples/demo.yaml, then shows the halt path with
# config/examples/halt-demo.yaml against our fault target. Everything listens on 127.0.0.1 only,
# every run ends by itself, and every process started here is stopped on exit and on Ctrl-C.
#
#   bash deploy/demo.sh BUILD_DIR
#
# Exit 0 when the demo went as expected: the first run passes (exit 0), the second halts (exit 1).
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: bash deploy/demo.sh BUILD_DIR" >&2
  exit 2
fi

SOURCE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1/demo" || exit 1
BUILD_DIR=$(cd "$1" && pwd)
BIN="$BUILD_DIR/bin"
DEMO="$BUILD_DIR/demo"
NGINX=${NGINX:-/usr/sbin/nginx}
NGINX_PORT=18080
TARGET_PORT=18081
HOST=127.0.0.1

nginx_pid=""
target_pid=""

if [[ -t 1 ]]; then
  say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  say() { printf '\n== %s\n' "$*"; }
fi
fail() {
  echo "demo: $*" >&2
  exit 1
}

stop_pid() {
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return 0
}

cleanup() {
  stop_pid "$target_pid"
  stop_pid "$nginx_pid"
  target_pid=""
  nginx_pid=""
}
trap cleanup EXIT
trap 'echo; echo "demo: interrupted, stopping what it started"; exit 130' INT TERM

# True when something accepts connections on HOST:$1.
port_answers() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Waits up to 10 s for HOST:$2 to accept connections while process $1 is alive.
wait_for_port() {
  local pid=$1 port=$2
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 1
    port_answers "$port" && return 0
    sleep 0.1
  done
  return 1
}

# --- preflight ----------------------------------------------------------------------------
for bin in master fault_target; do
  [[ -x "$BIN/$bin" ]] || fail "$BIN/$bin not found: build first (make)"
done
[[ -x "$NGINX" ]] || fail "nginx not found at $NGINX: run deploy/install-deps.sh"
for scenario in demo.yaml halt-demo.yaml; do
  [[ -f "$SOURCE_DIR/config/examples/$scenario" ]] || fail "config/examples/$scenario is missing"
done
for port in $NGINX_PORT $TARGET_PORT; do
  if port_answers "$port"; then
    fail "port $HOST:$port is already in use; the demo needs $NGINX_PORT (nginx) and" \
      "$TARGET_PORT (fault target). Stop whatever listens there and run it again."
  fi
done

# --- nginx with its own prefix under BUILD_DIR/demo/nginx -----------------------------------
prefix="$DEMO/nginx"
rm -rf "$prefix"
mkdir -p "$prefix/html" "$prefix/tmp" "$DEMO/out" "$DEMO/out-halt" || exit 1
cat >"$prefix/html/index.html" <<'HTML'
<!doctype html>
<html><head><title>Stampede demo</title></head>
<body><h1>Stampede demo shop</h1><p><a href="/products.json">products</a> ·
<a href="/about.html">about</a></p></body></html>
HTML
cat >"$prefix/html/about.html" <<'HTML'
<!doctype html>
<html><body><h1>About</h1><p>A static page served by nginx for the Stampede demo.</p></body></html>
HTML
cat >"$prefix/html/products.json" <<'JSON'
{"products": [
  {"id": 1, "sku": 42, "name": "kettle", "price": 19.50},
  {"id": 2, "sku": 43, "name": "teapot", "price": 24.00},
  {"id": 3, "sku": 44, "name": "mug", "price": 6.25}
]}
JSON
echo "ok" >"$prefix/html/health.txt"

user_line=""
# As root, nginx would switch its workers to www-data; keep them as the current user.
[[ $(id -u) -eq 0 ]] && user_line="user root;"
cat >"$prefix/nginx.conf" <<CONF
$user_line
worker_processes 1;
pid $prefix/nginx.pid;
error_log $prefix/error.log warn;
events { worker_connections 4096; }
http {
  types { text/html html; application/json json; text/plain txt; }
  default_type application/octet-stream;
  log_format stampede '\$msec \$status \$request_method \$request_uri \$body_bytes_sent';
  access_log $prefix/access.log stampede;
  keepalive_requests 1000000;
  client_body_temp_path $prefix/tmp/body;
  proxy_temp_path $prefix/tmp/proxy;
  fastcgi_temp_path $prefix/tmp/fastcgi;
  uwsgi_temp_path $prefix/tmp/uwsgi;
  scgi_temp_path $prefix/tmp/scgi;
  server {
    listen $HOST:$NGINX_PORT;
    server_name localhost;
    root $prefix/html;
    index index.html;
  }
}
CONF
# A build without a module rejects its temp-path directive: drop those lines.
for module in fastcgi uwsgi scgi; do
  if "$NGINX" -V 2>&1 | grep -q -- "--without-http_${module}_module"; then
    sed -i "/${module}_temp_path/d" "$prefix/nginx.conf"
  fi
done

say "Starting nginx on http://$HOST:$NGINX_PORT (config and logs in $prefix)"
# setsid: Ctrl-C reaches only the master (which stops gracefully); cleanup stops these two.
setsid "$NGINX" -p "$prefix/" -e "$prefix/error.log" -c "$prefix/nginx.conf" -g 'daemon off;' \
  </dev/null >"$prefix/nginx.out" 2>&1 &
nginx_pid=$!
if ! wait_for_port "$nginx_pid" "$NGINX_PORT"; then
  cat "$prefix/error.log" "$prefix/nginx.out" 2>/dev/null >&2
  fail "nginx did not start on $HOST:$NGINX_PORT"
fi

say "Starting the fault target on http://$HOST:$TARGET_PORT (log in $DEMO/fault_target.log)"
rm -f "$DEMO/fault_target.log"
setsid "$BIN/fault_target" --host "$HOST" --port "$TARGET_PORT" --log "$DEMO/fault_target.log" \
  </dev/null >"$DEMO/fault_target.out" 2>&1 &
target_pid=$!
if ! wait_for_port "$target_pid" "$TARGET_PORT"; then
  cat "$DEMO/fault_target.out" >&2
  fail "the fault target did not start on $HOST:$TARGET_PORT"
fi

# --- run 1: a clean load test -----------------------------------------------------------------
say "Run 1: config/examples/demo.yaml against nginx (about 12 s, live figures once a second)"
echo "   $BIN/master --out $DEMO/out config/examples/demo.yaml"
demo_rc=0
(cd "$SOURCE_DIR" && "$BIN/master" --out "$DEMO/out" config/examples/demo.yaml) || demo_rc=$?
if [[ $demo_rc -eq 0 ]]; then
  echo "-> exit 0: passed. Report: $DEMO/out/report.json"
  echo "   Open it in a browser: $DEMO/out/report.html (charts, tables; no network needed)"
  echo "   nginx logged $(wc -l <"$prefix/access.log") requests in $prefix/access.log"
else
  echo "-> exit $demo_rc: expected 0. See the output above and $DEMO/out/." >&2
fi
[[ $demo_rc -eq 130 ]] && exit 130

# --- run 2: the halt path ---------------------------------------------------------------------
say "Run 2: config/examples/halt-demo.yaml against the fault target"
echo "   /fail-after/200 answers 200 to the first 200 requests, then 500 with"
echo "   {\"error\":\"pool exhausted\",...}. With halt.on_error: first, that first 500 stops every"
echo "   virtual user at once: expect the FIRST ERROR block (step, URL, status, headers, body)"
echo "   and exit code 1. That is the expected outcome here, not a failure of the demo."
echo "   $BIN/master --out $DEMO/out-halt config/examples/halt-demo.yaml"
halt_rc=0
(cd "$SOURCE_DIR" && "$BIN/master" --out "$DEMO/out-halt" config/examples/halt-demo.yaml) ||
  halt_rc=$?
seen=$(grep -c . "$DEMO/fault_target.log" 2>/dev/null)
if [[ $halt_rc -eq 1 ]]; then
  echo "-> exit 1: halted on the first error, as expected. Report: $DEMO/out-halt/report.json"
  echo "   The first error and the halt timeline: $DEMO/out-halt/report.html"
  echo "   The fault target saw ${seen:-0} requests: 200 answered 200, the rest 500 or in flight."
else
  echo "-> exit $halt_rc: expected 1 (halted). See the output above and $DEMO/out-halt/." >&2
fi
[[ $halt_rc -eq 130 ]] && exit 130

cleanup
for page in "$DEMO/out/report.html" "$DEMO/out-halt/report.html"; do
  [[ -s "$page" ]] || fail "$page was not written"
done
if [[ $demo_rc -eq 0 && $halt_rc -eq 1 ]]; then
  say "Demo complete: run 1 passed (exit 0), run 2 halted on its first error (exit 1)."
  echo "HTML report: $DEMO/out/report.html"
  exit 0
fi
say "Demo did not go as expected: run 1 exit $demo_rc (want 0), run 2 exit $halt_rc (want 1)."
exit 1
