#!/usr/bin/env bash
# Throughput and memory benchmark: Stampede (Beast and curl engines) against wrk and Locust
# (FastHttpUser) on the same nginx, and Stampede over HTTP/2 (curl engine) against h2load on that
# nginx over TLS, all on 127.0.0.1.
#
#   bash tests/bench/throughput.sh [BUILD_DIR]        (default BUILD_DIR: build/)
#
# nginx (1 worker, tiny keep-alive `GET /`, access log off) is pinned to CPU 0 and every load
# tool to CPU 1. Each run lasts DURATION seconds and is measured with GNU time (client user+sys
# CPU and peak RSS). Results: completed requests per client CPU-second and the ratio to wrk at
# 50 and 1,000 connections (all four tools) and 8,000 (Stampede Beast and wrk); the same over
# HTTP/2 with TLS against h2load at 50 connections, one stream each; peak RSS per virtual user
# at 5,000 users. Tables go to stdout and, with the raw records, to
# BUILD_DIR/bench/throughput.txt; each run's output stays in BUILD_DIR/bench/runs/.
#
# Not part of `make test`: it installs its own extra Debian packages (wrk, python3-locust,
# nghttp2-client, ...).
# Every process it starts is bounded by `timeout` and stopped on exit or Ctrl-C.
#
# Environment (defaults in brackets):
#   DURATION [10]           seconds per run (load phase; Stampede adds its ramp)
#   POINTS ["50 1000"]      connection counts for the four-tool comparison
#   TOOLS ["stampede-beast stampede-curl wrk locust"]   the tools run at each of POINTS
#   BIG [8000]              the large point (Stampede Beast and wrk); empty to skip
#   BIG_TOOLS ["stampede-beast wrk"]
#   H2 [50]                 connections for the HTTP/2 point; empty to skip
#   H2_TOOLS ["stampede-curl-h2 h2load"]
#   BEFORE [unset]          another build's master binary: a Stampede tool named with "-before"
#                           (e.g. TOOLS="stampede-curl-before stampede-curl wrk") runs it, so
#                           that two builds are compared in one run
#   MEM_USERS [5000]        virtual users for the memory runs; empty to skip
#   MEM_TOOLS ["stampede-beast stampede-curl wrk locust"]
#   RAMP [1s] RAMP_FROM [1000]   Stampede ramp for runs with at least RAMP_FROM users
#   ON_ERROR [first]        Stampede halt.on_error (first = the default machinery; never)
#   SERVER_CPU [0] CLIENT_CPU [1]
#   PAUSE [3]               seconds between runs (lets closing connections drain)
#   WAIT_LOAD [unset]       wait (up to WAIT_MAX [300] s) for the 1-min load average to drop
#                           to this before starting, e.g. WAIT_LOAD=0.5
#   SKIP_INSTALL [unset]    set to 1 to skip the apt-get step
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/bench/benchlib.sh
source "$HERE/benchlib.sh"
SOURCE=$(cd "$HERE/../.." && pwd)
BUILD_DIR=$(realpath -m "${1:-$SOURCE/build}")
MASTER="$BUILD_DIR/bin/master"
PY=/usr/bin/python3 # Debian's python: Locust and its gevent live there
LIB="$HERE/benchlib.py"

DURATION=${DURATION:-10}
DURATION=${DURATION%s}
POINTS=${POINTS-50 1000}
TOOLS=${TOOLS-stampede-beast stampede-curl wrk locust}
BIG=${BIG-8000}
BIG_TOOLS=${BIG_TOOLS-stampede-beast wrk}
H2=${H2-50}
H2_TOOLS=${H2_TOOLS-stampede-curl-h2 h2load}
MEM_USERS=${MEM_USERS-5000}
MEM_TOOLS=${MEM_TOOLS-stampede-beast stampede-curl wrk locust}
RAMP=${RAMP:-1s}
RAMP_FROM=${RAMP_FROM:-1000}
ON_ERROR=${ON_ERROR:-first}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PAUSE=${PAUSE:-3}
NOFILE=65536

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Packages (separate from deploy/install-deps.sh: benches are not part of make test)

install_packages() {
  local packages=(wrk python3-locust util-linux procps time nginx-light python3 nghttp2-client
    openssl) missing=() p
  for p in "${packages[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) == "install ok installed" ]] ||
      missing+=("$p")
  done
  # nginx from any of Debian's flavours will do.
  if [[ " ${missing[*]} " == *" nginx-light "* ]] && [[ -x /usr/sbin/nginx ]]; then
    missing=("${missing[@]/nginx-light/}")
  fi
  read -r -a missing <<<"${missing[*]}"
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  local sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts nginx on install; the bench runs its own instance.
  if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
    "${sudo_cmd[@]}" systemctl stop nginx || true
  fi
}

[[ -n ${SKIP_INSTALL:-} ]] || install_packages
for tool in wrk /usr/bin/locust taskset pgrep /usr/bin/time /usr/sbin/nginx "$PY" h2load openssl; do
  command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ -x $MASTER ]] || die "$MASTER not found: build first (make), or pass BUILD_DIR"
cpus=$(nproc --all)
((SERVER_CPU < cpus && CLIENT_CPU < cpus && SERVER_CPU != CLIENT_CPU)) ||
  die "need two distinct CPUs (SERVER_CPU=$SERVER_CPU CLIENT_CPU=$CLIENT_CPU, $cpus CPUs)"

# Open files: 8,000 connections for the client and as many for nginx, which inherits the limit.
# Raising the hard limit needs CAP_SYS_RESOURCE (not there in every container): else take it all.
ulimit -Hn "$NOFILE" 2>/dev/null || true
if ! ulimit -n "$NOFILE" 2>/dev/null; then
  hard=$(ulimit -Hn)
  [[ $hard == unlimited ]] || NOFILE=$hard
  ulimit -n "$NOFILE"
fi
NOFILE=$(ulimit -n)
((NOFILE >= ${BIG:-0} + 1000 && NOFILE >= ${MEM_USERS:-0} + 1000)) ||
  log "warning: the open-file limit is only $NOFILE"

# ---------------------------------------------------------------------------------------------
# Work directory, cleanup

BENCH_DIR="$BUILD_DIR/bench"
RUNS="$BENCH_DIR/runs"
RAW="$BENCH_DIR/throughput.raw"
HEADER="$BENCH_DIR/throughput.header"
mkdir -p "$BENCH_DIR"
rm -rf "$RUNS"
mkdir -p "$RUNS"
: >"$RAW"
WORK=$(mktemp -d /tmp/stampede-bench.XXXXXX)
NGINX_PREFIX="$WORK/nginx"
mkdir -p "$NGINX_PREFIX"
NGINX_PID=""   # the `timeout` wrapping nginx (its process group leader)
CURRENT_PID="" # the `timeout` wrapping the running client

stop_group() { # PID: TERM the process group that `timeout` leads, then KILL what is left
  local pid=$1 i
  [[ -n $pid ]] || return 0
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_group "$CURRENT_PID"
  CURRENT_PID=""
  stop_group "$NGINX_PID"
  NGINX_PID=""
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# A private copy of master: a rebuild of BUILD_DIR during the bench must not mix binaries.
MASTER_BUILT=$(date -r "$MASTER" '+%Y-%m-%d %H:%M:%S')
cp "$MASTER" "$WORK/master"
MASTER="$WORK/master"
"$MASTER" --version >/dev/null || die "$MASTER does not run"
if [[ -n ${BEFORE:-} ]]; then
  [[ -x $BEFORE ]] || die "BEFORE=$BEFORE is not an executable"
  BEFORE_SOURCE="$BEFORE (built $(date -r "$BEFORE" '+%Y-%m-%d %H:%M:%S'))"
  cp "$BEFORE" "$WORK/master-before"
  BEFORE="$WORK/master-before"
fi

# ---------------------------------------------------------------------------------------------
# nginx on SERVER_CPU

runs_total_s() { # generous upper bound of the whole bench, so nginx stops by itself too
  local n=0 p
  for p in $POINTS; do n=$((n + $(wc -w <<<"$TOOLS"))); done
  [[ -n $BIG ]] && n=$((n + $(wc -w <<<"$BIG_TOOLS")))
  [[ -n $H2 ]] && n=$((n + $(wc -w <<<"$H2_TOOLS")))
  [[ -n $MEM_USERS ]] && n=$((n + 2 * $(wc -w <<<"$MEM_TOOLS")))
  echo $((n * (DURATION + 60) + 600))
}

make_certificate() { # a self-signed certificate for 127.0.0.1, for the HTTP/2 server
  CERT="$NGINX_PREFIX/cert.pem"
  KEY="$NGINX_PREFIX/key.pem"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 ||
    die "openssl could not make a certificate"
}

start_nginx() {
  local attempt conf="$NGINX_PREFIX/nginx.conf" user_line=""
  mkdir -p "$NGINX_PREFIX/tmp"
  [[ $(id -u) -eq 0 ]] && user_line="user root;"
  make_certificate
  for attempt in 1 2 3 4 5; do
    PORT=$("$PY" "$LIB" free-port)
    H2_PORT=$("$PY" "$LIB" free-port)
    [[ $H2_PORT != "$PORT" ]] || continue
    cat >"$conf" <<EOF
$user_line
worker_processes 1;
worker_rlimit_nofile $NOFILE;
pid $NGINX_PREFIX/nginx.pid;
error_log $NGINX_PREFIX/error.log warn;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  default_type text/plain;
  client_body_temp_path $NGINX_PREFIX/tmp/body;
  proxy_temp_path $NGINX_PREFIX/tmp/proxy;
  fastcgi_temp_path $NGINX_PREFIX/tmp/fastcgi;
  uwsgi_temp_path $NGINX_PREFIX/tmp/uwsgi;
  scgi_temp_path $NGINX_PREFIX/tmp/scgi;
  server {
    listen 127.0.0.1:$PORT backlog=4096;
    location = / { return 200 "ok\n"; }
    location = /__status { stub_status; }
  }
  # HTTP/2 over TLS (h2 by ALPN; nginx 1.22 syntax), the same response.
  server {
    listen 127.0.0.1:$H2_PORT ssl http2 backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    location = / { return 200 "ok\n"; }
  }
}
EOF
    timeout -s QUIT -k 10 "$(runs_total_s)" taskset -c "$SERVER_CPU" \
      /usr/sbin/nginx -p "$NGINX_PREFIX/" -e "$NGINX_PREFIX/error.log" -c "$conf" \
      -g 'daemon off;' </dev/null >"$NGINX_PREFIX/stderr" 2>&1 &
    NGINX_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
      if [[ $("$PY" "$LIB" stub "$PORT") != "NA NA" ]]; then
        NGINX_MASTER=$(cat "$NGINX_PREFIX/nginx.pid")
        NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -n1)
        [[ -n $NGINX_WORKER ]] && return 0
      fi
      kill -0 "$NGINX_PID" 2>/dev/null || break
      sleep 0.1
    done
    cat "$NGINX_PREFIX/error.log" "$NGINX_PREFIX/stderr" >&2 2>/dev/null || true
    stop_group "$NGINX_PID"
    NGINX_PID=""
    grep -qs "Address already in use" "$NGINX_PREFIX/error.log" || break
  done
  die "nginx did not start"
}

nginx_cpu_ticks() { # utime + stime of the nginx worker, in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$NGINX_WORKER/stat" 2>/dev/null || echo 0
}

# ---------------------------------------------------------------------------------------------
# One run

write_scenario() { # FILE ENGINE USERS RAMP [h2]
  local target="http://127.0.0.1:$PORT" h2_lines=""
  if [[ ${5:-} == h2 ]]; then
    # h2load checks no certificate either.
    target="https://127.0.0.1:$H2_PORT"
    h2_lines=$'  version: "2"\n  tls: {verify: false}'
  fi
  cat >"$1" <<EOF
# Written by tests/bench/throughput.sh: the full machinery on (templated header, expect, stats).
name: bench-$2-$3${5:+-$5}
target: $target
load:
  users: $3
  ramp: $4
  duration: ${DURATION}s
halt:
  on_error: $ON_ERROR
http:
  engine: $2
  timeout: 10s
  keep_alive: true
$h2_lines
$(bench_request_yaml)
EOF
}

run_one() { # KIND TOOL N
  local kind=$1 tool=$2 n=$3
  local dir="$RUNS/$kind-$tool-$n" ramp=0s cmd=() ramp_s=0 master=$MASTER
  mkdir -p "$dir"
  if [[ $tool == stampede-*-before ]]; then
    [[ -n ${BEFORE:-} ]] || die "$tool needs BEFORE=path/to/master"
    master=$BEFORE
  fi
  case ${tool%-before} in
    stampede-beast | stampede-curl | stampede-curl-h2)
      ((n >= RAMP_FROM)) && ramp=$RAMP
      if [[ $tool == stampede-curl-h2* ]]; then
        write_scenario "$dir/scenario.yaml" curl "$n" "$ramp" h2
      else
        local engine=${tool#stampede-}
        write_scenario "$dir/scenario.yaml" "${engine%-before}" "$n" "$ramp"
      fi
      ramp_s=$(sed -E 's/s$//; s/ms$//' <<<"$ramp")
      [[ $ramp == *ms ]] && ramp_s=1
      cmd=("$master" --threads 1 --quiet --out "$dir/out" "$dir/scenario.yaml")
      ;;
    wrk)
      ramp=-
      cmd=(wrk -t1 -c"$n" -d"${DURATION}s" --timeout 10s --latency "http://127.0.0.1:$PORT/")
      ;;
    h2load)
      ramp=-
      # One stream per connection (-m1), as one Stampede user has one request in flight.
      cmd=(h2load -t1 -c"$n" -m1 -D "$DURATION" "https://127.0.0.1:$H2_PORT/")
      ;;
    locust)
      ramp=1s # spawn rate = users
      cmd=(/usr/bin/locust -f "$HERE/locustfile.py" --headless -u "$n" -r "$n"
        -t "${DURATION}s" --host "http://127.0.0.1:$PORT" --only-summary)
      ;;
    *) die "unknown tool $tool" ;;
  esac

  local load1 stub0 stub1 cpu0 cpu1 rc=0
  load1=$(cut -d' ' -f1 /proc/loadavg)
  stub0=$("$PY" "$LIB" stub "$PORT")
  cpu0=$(nginx_cpu_ticks)
  timeout -s INT -k 20 $((DURATION + ramp_s + 60)) \
    taskset -c "$CLIENT_CPU" /usr/bin/time -o "$dir/time" -f "%e %U %S %M" "${cmd[@]}" \
    </dev/null >"$dir/stdout" 2>"$dir/stderr" &
  CURRENT_PID=$!
  wait "$CURRENT_PID" || rc=$?
  CURRENT_PID=""
  cpu1=$(nginx_cpu_ticks)
  stub1=$("$PY" "$LIB" stub "$PORT")

  local acc0 req0 acc1 req1 srv=""
  read -r acc0 req0 <<<"$stub0"
  read -r acc1 req1 <<<"$stub1"
  if [[ $acc0 != NA && $acc1 != NA ]]; then
    # The second stub_status request counts itself.
    srv="server_accepts=$((acc1 - acc0 - 1)) server_requests=$((req1 - req0 - 1))"
  fi
  local parsed
  parsed=$("$PY" "$LIB" parse "$tool" "$dir")
  local ticks
  ticks=$(getconf CLK_TCK)
  echo "kind=$kind tool=$tool conns=$n ramp=$ramp dur_s=$DURATION rc=$rc load1=$load1 $srv" \
    "nginx_cpu_s=$(awk -v a="$cpu0" -v b="$cpu1" -v t="$ticks" 'BEGIN { printf "%.2f", (b - a) / t }')" \
    "$parsed" >>"$RAW"

  # One progress line, and the details when something went wrong.
  local summary
  summary=$(tail -n1 "$RAW" | "$PY" "$LIB" summary)
  log "$(printf '%-5s %-15s %6s: %s' "$kind" "$tool" "$n" "$(head -n1 <<<"$summary")")"
  if [[ $rc -ne 0 ]] || [[ $(wc -l <<<"$summary") -gt 1 ]]; then
    log "  exit code $rc; $(tail -n +2 <<<"$summary")"
    if [[ $tool == stampede-* && $rc -ne 0 ]]; then
      log "  --- master stdout (tail)"
      tail -n 25 "$dir/stdout" | sed 's/^/    /'
      log "  --- master stderr (tail)"
      tail -n 25 "$dir/stderr" | sed 's/^/    /'
    elif [[ $rc -ne 0 ]]; then
      tail -n 8 "$dir/stderr" | sed 's/^/    /'
    fi
  fi
  sleep "$PAUSE"
}

# ---------------------------------------------------------------------------------------------
# Main

if [[ -n ${WAIT_LOAD:-} ]]; then
  deadline=$((SECONDS + ${WAIT_MAX:-300}))
  while (($(awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v w="$WAIT_LOAD" 'BEGIN { print (l > w) }'))) &&
    ((SECONDS < deadline)); do
    log "load average $(cut -d' ' -f1-3 /proc/loadavg) above $WAIT_LOAD; waiting"
    sleep 15
  done
fi

start_nginx
log "nginx on 127.0.0.1:$PORT, h2 over TLS on $H2_PORT (worker $NGINX_WORKER on CPU $SERVER_CPU); clients on CPU $CLIENT_CPU"
log "runs of ${DURATION}s; Stampede ramp $RAMP at >= $RAMP_FROM users (0s below), halt.on_error: $ON_ERROR"

{
  echo "Stampede throughput bench, $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "  stampede $(git -C "$SOURCE" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$(git -C "$SOURCE" diff --quiet 2>/dev/null || echo '(dirty tree)')," \
    "$("$MASTER" --version 2>/dev/null | head -n1) (binary built $MASTER_BUILT)"
  [[ -z ${BEFORE:-} ]] || echo "  tools named *-before: $BEFORE_SOURCE"
  echo "  $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), $(h2load --version 2>&1 | head -n1)," \
    "libcurl $(dpkg-query -W -f='${Version}' libcurl4 2>/dev/null), locust $(dpkg-query -W -f='${Version}' python3-locust)," \
    "nginx $(dpkg-query -W -f='${Version}' nginx-common 2>/dev/null), kernel $(uname -r)"
  echo "  $(nproc --all) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))," \
    "nginx on CPU $SERVER_CPU, load tool on CPU $CLIENT_CPU, ${DURATION}s per run, open files $(ulimit -n)"
  echo "  load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (load1 column: at each run's start;"
  echo "  the machine is shared, so numbers are noisy)"
  echo "  Stampede: master --threads 1 --quiet, scenario with templated header X-Req: {{vu}}-{{iteration}},"
  echo "  expect status 200, halt.on_error: $ON_ERROR; ramp $RAMP at >= $RAMP_FROM users so the connection"
  echo "  storm does not dominate (run time = ramp + ${DURATION}s). wrk: -t1, no ramp. Locust: FastHttpUser,"
  echo "  constant(0) wait, one process, spawn rate = users (1 s ramp). HTTP/2: the same scenario with"
  echo "  http.version \"2\" (curl engine) on https (h2 by ALPN, no certificate check) against h2load -t1 -m1."
  echo "  client CPU = user+sys of the tool's process (GNU time). errors for wrk = connect+write+timeout"
  echo "  socket errors + non-2xx (read errors are listed in the notes). srv conns = connections nginx"
  echo "  accepted during the run (stub_status)."
} >"$HEADER"

for n in $POINTS; do
  for tool in $TOOLS; do
    run_one tput "$tool" "$n"
  done
done
if [[ -n $BIG ]]; then
  for tool in $BIG_TOOLS; do
    run_one tput "$tool" "$BIG"
  done
fi
if [[ -n $H2 ]]; then
  for tool in $H2_TOOLS; do
    run_one h2 "$tool" "$H2"
  done
fi
if [[ -n $MEM_USERS ]]; then
  for tool in $MEM_TOOLS; do
    run_one mem "$tool" 1
    run_one mem "$tool" "$MEM_USERS"
  done
fi

echo
"$PY" "$LIB" report "$RAW" "$BENCH_DIR/throughput.txt" "$HEADER"
log "written to $BENCH_DIR/throughput.txt (run outputs in $RUNS)"
