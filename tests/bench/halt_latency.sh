#!/usr/bin/env bash
# Halt latency (issue 4): Stampede's global halt vs the Locust recipe, 8 workers on loopback.
#
#   bash tests/bench/halt_latency.sh [BUILD_DIR]
#   RUNS=10 LOCUST_RUNS=5 bash tests/bench/halt_latency.sh       # a quicker look
#
# Stampede: 8 worker daemons (`worker --listen tcp://127.0.0.1:PORT --threads 1 --quiet`) stay up
# for all RUNS; each run starts a fresh fault_target (its /fail-after counter starts at 0) and
# runs `master --workers hosts --quiet --out DIR` with 16 users on GET /fail-after/FAIL_AFTER and
# halt.on_error: first. Collected from report.json: halt.halt_sent_ms, halt.all_stopped_ms,
# halt.requests_sent_after_first_error beside what the target received from that moment.
#
# Locust (the anchor, installed with apt-get as python3-locust if missing): per run a fresh
# fault_target, `locust --master --headless --expect-workers 8 -u 16 -r 1000` and 8
# `locust --worker` processes with halt_locustfile.py (FastHttpUser on the same path; a request
# listener on the worker sends a custom "halt" message on its first failure; the master's handler
# calls runner.quit()). Timestamps (time.time()) from the listeners: see halt_locustfile.py.
#
# For both, fault_target's --log shows what reached the target after the stop was sent.
# Knobs: RUNS (50), LOCUST_RUNS (20), FAIL_AFTER (2000), USERS (16), SKIP_LOCUST=1,
# SKIP_INSTALL=1. Everything listens on 127.0.0.1, is bounded by `timeout` and is stopped on exit.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
BIN="$BUILD/bin"
RUNS="${RUNS:-50}"
LOCUST_RUNS="${LOCUST_RUNS:-20}"
FAIL_AFTER="${FAIL_AFTER:-2000}"
USERS="${USERS:-16}"
WORKERS=8
PY=/usr/bin/python3
HELPER="$HERE/halt_analyze.py"
OUT="$BUILD/bench/halt_latency"
TABLE="$BUILD/bench/halt_latency.txt"
RECORDS="$OUT/records"

die() { echo "halt_latency: $*" >&2; exit 1; }
for b in master worker fault_target; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: build first (ninja -C $BUILD -j2)"
done

if [ -z "${SKIP_LOCUST:-}" ] && ! $PY -c 'import locust' 2>/dev/null; then
  if [ -n "${SKIP_INSTALL:-}" ]; then
    die "python3-locust is not installed (apt-get install -y python3-locust) and SKIP_INSTALL is set"
  fi
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "halt_latency: installing python3-locust" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q python3-locust >&2 ||
    die "cannot install python3-locust"
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
: >"$RECORDS"
# Every run uses one snapshot of the binaries, even if a build relinks build/bin meanwhile.
mkdir -p "$OUT/bin"
for b in master worker fault_target; do cp -p "$BIN/$b" "$OUT/bin/$b" || die "cannot copy $BIN/$b"; done
echo "halt_latency: binaries from $BIN, built $(date -r "$BIN/master" '+%F %T')" >&2
BIN="$OUT/bin"

# Starts a fresh fault_target logging to DIR/target.log; sets TARGET_PID and TARGET_PORT.
start_target() { # DIR
  local dir="$1"
  rm -f "$dir/target.port"
  timeout 600 "$BIN/fault_target" --port 0 --port-file "$dir/target.port" --log "$dir/target.log" \
    2>"$dir/target.err" &
  TARGET_PID=$!
  PIDS+=("$TARGET_PID")
  for _ in $(seq 1 200); do
    [ -s "$dir/target.port" ] && break
    sleep 0.01
  done
  TARGET_PORT="$(cat "$dir/target.port" 2>/dev/null)"
  [ -n "$TARGET_PORT" ] || die "fault_target did not start: $(cat "$dir/target.err")"
}

stop_pid() { # PID: SIGTERM, then SIGKILL after 5 s
  local p="$1"
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  return 0
}

# ---- Stampede ------------------------------------------------------------------------------

echo "halt_latency: Stampede, $RUNS runs with $WORKERS worker daemons" >&2
hosts="$OUT/hosts.txt"
: >"$hosts"
WORKER_PIDS=()
for i in $(seq 1 $WORKERS); do
  # Up to 5 tries: the port may be taken in between, or the binary being relinked by a build.
  for attempt in 1 2 3 4 5; do
    port="$($PY "$HELPER" free-port)"
    timeout 3600 "$BIN/worker" --listen "tcp://127.0.0.1:$port" --threads 1 --quiet \
      2>>"$OUT/worker-$i.err" &
    wp=$!
    sleep 0.2
    if kill -0 "$wp" 2>/dev/null; then
      PIDS+=("$wp"); WORKER_PIDS+=("$wp")
      echo "127.0.0.1:$port" >>"$hosts"
      break
    fi
    wait "$wp" 2>/dev/null
    [ "$attempt" = 5 ] && die "worker $i could not listen: $(tail -1 "$OUT/worker-$i.err")"
    sleep 1
  done
done

for run in $(seq 1 "$RUNS"); do
  dir="$OUT/stampede/$(printf %03d "$run")"
  mkdir -p "$dir"
  start_target "$dir"
  cat >"$dir/scenario.yaml" <<EOF
name: halt-latency
target: http://127.0.0.1:$TARGET_PORT
load:
  users: $USERS
  duration: 30s
halt:
  on_error: first
flows:
  - name: until-failure
    steps:
      - get: /fail-after/$FAIL_AFTER
        name: fail-after
EOF
  for attempt in 1 2 3; do
    timeout 90 "$BIN/master" --workers "$hosts" --quiet --out "$dir/out" "$dir/scenario.yaml" \
      >"$dir/master.out" 2>"$dir/master.err"
    rc=$?
    # 126/127: the binary could not be run (being relinked by a build on a shared machine).
    { [ "$rc" = 126 ] || [ "$rc" = 127 ]; } || break
    sleep 2
  done
  echo "$rc" >"$dir/rc"
  # Stragglers, if any, reach the target before its log is read.
  sleep 0.3
  stop_pid "$TARGET_PID"
  rec="$($PY "$HELPER" stampede "$dir")"
  echo "$rec" >>"$RECORDS"
  printf "stampede %3d/%d  %s\n" "$run" "$RUNS" "$rec" >&2
  for p in "${WORKER_PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || die "a worker daemon died during run $run (see $OUT/worker-*.err)"
  done
done
for p in "${WORKER_PIDS[@]}"; do stop_pid "$p"; done

# ---- Locust --------------------------------------------------------------------------------

if [ -z "${SKIP_LOCUST:-}" ]; then
  echo "halt_latency: Locust, $LOCUST_RUNS runs with 1 master + $WORKERS worker processes" >&2
  LOCUSTFILE="$HERE/halt_locustfile.py"
  for run in $(seq 1 "$LOCUST_RUNS"); do
    dir="$OUT/locust/$(printf %03d "$run")"
    mkdir -p "$dir"
    start_target "$dir"
    mport="$($PY "$HELPER" free-port)"
    HALT_OUT="$dir" HALT_PATH="/fail-after/$FAIL_AFTER" timeout 120 /usr/bin/locust \
      -f "$LOCUSTFILE" --master --headless --expect-workers $WORKERS -u "$USERS" -r 1000 -t 60s \
      --host "http://127.0.0.1:$TARGET_PORT" --master-bind-host 127.0.0.1 \
      --master-bind-port "$mport" --stop-timeout 0 --only-summary --loglevel WARNING \
      >"$dir/master.out" 2>"$dir/master.err" &
    mpid=$!
    PIDS+=("$mpid")
    wpids=()
    for i in $(seq 1 $WORKERS); do
      HALT_OUT="$dir" HALT_PATH="/fail-after/$FAIL_AFTER" timeout 120 /usr/bin/locust \
        -f "$LOCUSTFILE" --worker --master-host 127.0.0.1 --master-port "$mport" \
        --loglevel WARNING >"$dir/worker-$i.out" 2>"$dir/worker-$i.err" &
      wpids+=($!)
      PIDS+=($!)
    done
    wait "$mpid"
    echo $? >"$dir/rc"
    # Workers exit on the master's quit; give them a moment, then stop any that did not.
    for _ in $(seq 1 100); do
      alive=0
      for p in "${wpids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
      [ "$alive" = 0 ] && break
      sleep 0.1
    done
    for p in "${wpids[@]}"; do stop_pid "$p"; done
    sleep 0.3
    stop_pid "$TARGET_PID"
    rec="$($PY "$HELPER" locust "$dir")"
    echo "$rec" >>"$RECORDS"
    printf "locust   %3d/%d  %s\n" "$run" "$LOCUST_RUNS" "$rec" >&2
  done
fi

$PY "$HELPER" table "$RECORDS" "$TABLE"
echo "halt_latency: table in $TABLE, runs in $OUT" >&2
