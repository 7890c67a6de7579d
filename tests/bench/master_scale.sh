#!/usr/bin/env bash
# Master scale (issue 3): master CPU at 100, 500 and 1000 simulated workers.
#
#   bash tests/bench/master_scale.sh [BUILD_DIR]
#   POINTS="100 500" DURATION=10 bash tests/bench/master_scale.sh      # a quicker look
#
# For each N: build/bin/worker_simulator runs N simulated worker daemons in one process (N
# ROUTER sockets on 127.0.0.1, the real control-plane protocol, 1 s interval deltas with 20
# steps of a few hundred samples each, no HTTP at all) and writes a hosts file; then
#   master --workers hosts --quiet --duration ${DURATION}s --out DIR scenario.yaml
# runs a 20-step scenario with users = N against it. Measured: the master's CPU (user + system)
# over its whole life and over the steady part of the run (from /proc, t0 + 2 s to the end
# - 1 s), its peak RSS, the time from launch to the common start t0 (handshake + Prepare), and
# report.json totals.requests against what the simulator says it sent (they must be equal).
# If the master cannot start (exit 3 before the start), the point is retried and the table says
# how: "Too many open files" (libzmq's 1023 sockets per context; a master with a DEALER per
# worker used 3 per worker and stopped at about 340; today's dials every worker from one ROUTER)
# is retried with LD_PRELOAD=build/bin/zmq_max_sockets_shim.so, which raises ZMQ_MAX_SOCKETS
# without changing the master; anything else (handshake timeouts) with
# --connect-timeout ${RETRY_CONNECT_TIMEOUT}. The first attempt's files stay as attempt1.*.
#
# Knobs: POINTS ("100 500 1000"), DURATION (20), RATE (300 samples per step per second per
# worker), SIM_THREADS (1), BASE_PORT (24000; ports BASE..BASE+N-1, moved up when taken),
# CONNECT_TIMEOUT (empty: the master's default), RETRY_CONNECT_TIMEOUT (30s).
# Everything listens on 127.0.0.1 only, is bounded by `timeout`, and is stopped on exit.
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
BIN="$BUILD/bin"
POINTS="${POINTS:-100 500 1000}"
DURATION="${DURATION:-20}"
RATE="${RATE:-300}"
SIM_THREADS="${SIM_THREADS:-1}"
BASE_PORT="${BASE_PORT:-24000}"
CONNECT_TIMEOUT="${CONNECT_TIMEOUT:-}"
RETRY_CONNECT_TIMEOUT="${RETRY_CONNECT_TIMEOUT:-30s}"
PY=/usr/bin/python3
OUT="$BUILD/bench/master_scale"
TABLE="$BUILD/bench/master_scale.txt"

die() { echo "master_scale: $*" >&2; exit 1; }
[ -x "$BIN/master" ] || die "$BIN/master missing: build first (ninja -C $BUILD -j2)"
if [ ! -x "$BIN/worker_simulator" ]; then
  echo "master_scale: building worker_simulator" >&2
  ninja -C "$BUILD" -j2 worker_simulator >&2 || die "cannot build worker_simulator"
fi
if [ ! -e "$BIN/zmq_max_sockets_shim.so" ]; then
  ninja -C "$BUILD" -j2 zmq_max_sockets_shim >&2 || echo "master_scale: no shim; going without" >&2
fi
[ -x /usr/bin/time ] || die "/usr/bin/time missing (apt-get install -y time)"

# zmq: a socket is ~2 descriptors plus one per connection, on both sides.
hard="$(ulimit -Hn)"
want=65536
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then want="$hard"; fi
ulimit -n "$want" 2>/dev/null || ulimit -n "$hard"
echo "master_scale: open files limit $(ulimit -n)" >&2

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$OUT"
rm -f "$OUT/records"
# Every run uses one snapshot of the binaries, even if a build relinks build/bin meanwhile.
mkdir -p "$OUT/bin"
for b in master worker_simulator; do cp -p "$BIN/$b" "$OUT/bin/$b" || die "cannot copy $BIN/$b"; done
[ -e "$BIN/zmq_max_sockets_shim.so" ] && cp -p "$BIN/zmq_max_sockets_shim.so" "$OUT/bin/"
echo "master_scale: binaries from $BIN, master built $(date -r "$BIN/master" '+%F %T')" >&2
BIN="$OUT/bin"
CLK_TCK="$(getconf CLK_TCK)"

# ticks (utime + stime) of PID, or nothing when it is gone.
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null; }

scenario() { # N FILE
  local n="$1" file="$2" i
  {
    echo "# master_scale.sh: 20 named GET steps; nothing listens on port 9 and nothing is sent"
    echo "# there: the simulated workers speak only the control plane."
    echo "name: master-scale-$n"
    echo "target: http://127.0.0.1:9"
    echo "load:"
    echo "  users: $n"
    echo "  duration: ${DURATION}s"
    echo "flows:"
    echo "  - name: twenty-steps"
    echo "    steps:"
    for i in $(seq -w 0 19); do
      echo "      - get: /step/$i"
      echo "        name: step-$i"
    done
  } >"$file"
}

# Starts the simulator for N workers in DIR; sets SIM_PID. Tries a few base ports.
start_simulator() { # N DIR
  local n="$1" dir="$2" base attempt
  for attempt in 0 1 2 3 4; do
    base=$((BASE_PORT + attempt * 2000))
    rm -f "$dir/hosts.txt" "$dir/sim.json"
    timeout $((DURATION + 240)) /usr/bin/time -f "%e %U %S %M" -o "$dir/sim.time" \
      "$BIN/worker_simulator" --workers "$n" --base-port "$base" --hosts-file "$dir/hosts.txt" \
      --summary "$dir/sim.json" --rate "$RATE" --threads "$SIM_THREADS" \
      --max-seconds $((DURATION + 200)) 2>"$dir/sim.err" &
    SIM_PID=$!
    PIDS+=("$SIM_PID")
    for _ in $(seq 1 300); do
      [ -s "$dir/hosts.txt" ] && return 0
      kill -0 "$SIM_PID" 2>/dev/null || break
      sleep 0.1
    done
    wait "$SIM_PID" 2>/dev/null
    echo "master_scale: simulator on ports $base..$((base + n - 1)) failed: $(tail -1 "$dir/sim.err")" >&2
  done
  return 1
}

# Runs the master once; writes master.* files in DIR, its exit code in DIR/master.rc.
run_master() { # DIR [extra master args...]
  local dir="$1"; shift
  rm -rf "$dir/out" "$dir/cpu.samples"
  local launch_ms
  launch_ms="$($PY -c 'import time; print(int(time.time()*1000))')"
  echo "$launch_ms" >"$dir/launch_ms"
  timeout $((DURATION + 180)) /usr/bin/time -f "%e %U %S %M" -o "$dir/master.time" \
    env ${MASTER_PRELOAD:+LD_PRELOAD=$MASTER_PRELOAD} "$BIN/master" --workers "$dir/hosts.txt" --quiet --duration "${DURATION}s" --out "$dir/out" \
    "$@" "$dir/scenario.yaml" >"$dir/master.out" 2>"$dir/master.err" &
  local tpid=$! mpid="" tp
  PIDS+=("$tpid")
  # timeout -> /usr/bin/time -> (env execs) master
  for _ in $(seq 1 200); do
    tp="$(pgrep -P "$tpid" | head -1)"
    [ -n "$tp" ] && mpid="$(pgrep -P "$tp" | head -1)"
    [ -n "$mpid" ] && break
    sleep 0.01
  done
  # /proc samples of the master: wall ms and CPU ticks, every 250 ms while it lives.
  if [ -n "$mpid" ]; then
    while kill -0 "$mpid" 2>/dev/null; do
      t="$(ticks_of "$mpid")" || break
      [ -n "$t" ] && echo "$(date +%s%3N) $t" >>"$dir/cpu.samples"
      sleep 0.25
    done
  fi
  wait "$tpid"
  echo $? >"$dir/master.rc"
}

printf "%-8s %-10s %-8s\n" workers master exit >&2
for n in $POINTS; do
  dir="$OUT/$n"
  rm -rf "$dir"
  mkdir -p "$dir"
  scenario "$n" "$dir/scenario.yaml"
  load1="$(cut -d' ' -f1 /proc/loadavg)"
  start_simulator "$n" "$dir" || { echo "n=$n simulator_failed=1" >>"$OUT/records"; continue; }
  note=""
  how="as is"
  extra=()
  [ -n "$CONNECT_TIMEOUT" ] && extra=(--connect-timeout "$CONNECT_TIMEOUT")
  MASTER_PRELOAD=""
  run_master "$dir" "${extra[@]}"
  rc="$(cat "$dir/master.rc")"
  printf "%-8s %-10s %-8s\n" "$n" "$how" "$rc" >&2
  attempt=1
  while [ "$rc" = 3 ] && [ ! -s "$dir/out/report.json" ] && [ "$attempt" -lt 3 ]; do
    # Could not start: keep this attempt's evidence, say why, and retry differently.
    why="$(head -c 300 "$dir/master.err" | tr '\n' ';' | sed 's/;$//')"
    lines="$(wc -l <"$dir/master.err")"
    [ "$lines" -gt 3 ] && why="$why; ... $lines lines"
    for f in master.out master.err master.time master.rc cpu.samples; do
      [ -e "$dir/$f" ] && mv "$dir/$f" "$dir/attempt$attempt.$f"
    done
    if grep -q "Too many open files" "$dir/attempt$attempt.master.err" && [ -z "$MASTER_PRELOAD" ] &&
      [ -e "$BIN/zmq_max_sockets_shim.so" ]; then
      # libzmq's default of 1023 sockets per context, not the fd limit: see the shim's file.
      MASTER_PRELOAD="$BIN/zmq_max_sockets_shim.so"
      how="shim"
      note="${note:+$note; }exit 3 before the start ($why); retried with LD_PRELOAD=zmq_max_sockets_shim.so (ZMQ_MAX_SOCKETS 8192)"
    else
      extra=(--connect-timeout "$RETRY_CONNECT_TIMEOUT")
      how="${MASTER_PRELOAD:+shim+}ct $RETRY_CONNECT_TIMEOUT"
      note="${note:+$note; }exit 3 before the start ($why); retried with --connect-timeout $RETRY_CONNECT_TIMEOUT"
    fi
    # The simulated workers that joined were released (Stop) or go idle after 3 s.
    sleep 4
    run_master "$dir" "${extra[@]}"
    rc="$(cat "$dir/master.rc")"
    printf "%-8s %-10s %-8s\n" "$n" "$how" "$rc" >&2
    attempt=$((attempt + 1))
  done
  # The simulator exits by itself once every simulated worker got its FinalAck.
  for _ in $(seq 1 100); do kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$SIM_PID" 2>/dev/null; then kill "$SIM_PID" 2>/dev/null; fi
  wait "$SIM_PID" 2>/dev/null
  sim_rc=$?
  $PY - "$dir" "$n" "$rc" "$sim_rc" "$load1" "$DURATION" "$CLK_TCK" "$note" "$how" >>"$OUT/records" <<'EOF'
import json, os, shlex, sys
from datetime import datetime
d, n, rc, sim_rc, load1, duration, tck, note, how = sys.argv[1:]
duration, tck = float(duration), float(tck)
rec = {"n": n, "how": how, "exit": rc, "sim_exit": sim_rc, "load1": load1, "note": note}
def last_line(p):
    try:
        return open(p).read().strip().splitlines()[-1]
    except Exception:
        return ""
t = last_line(os.path.join(d, "master.time")).split()
if len(t) == 4:
    wall, user, sys_, rss = map(float, t)
    rec.update(m_wall=wall, m_cpu_pct=100 * (user + sys_) / wall if wall else 0, m_rss_mb=rss / 1024)
t = last_line(os.path.join(d, "sim.time")).split()
if len(t) == 4:
    wall, user, sys_, rss = map(float, t)
    rec.update(sim_cpu_pct=100 * (user + sys_) / wall if wall else 0)
try:
    r = json.load(open(os.path.join(d, "out", "report.json")))
    rec["report_requests"] = r["totals"]["requests"]
    rec["report_dropped"] = r.get("control_messages_dropped")
    rec["workers_done"] = sum(1 for w in r["workers"] if w["state"] == "done")
    rec["outcome"] = r.get("outcome")
    t0 = datetime.strptime(r["started_at"], "%Y-%m-%dT%H:%M:%S.%fZ")
    t0_ms = (t0 - datetime(1970, 1, 1)).total_seconds() * 1000
    launch = float(open(os.path.join(d, "launch_ms")).read())
    rec["start_s"] = (t0_ms - launch) / 1000
    # Steady state: from t0 + 2 s to the end of the duration - 1 s.
    samples = [tuple(map(float, l.split())) for l in open(os.path.join(d, "cpu.samples"))]
    lo, hi = t0_ms + 2000, t0_ms + (duration - 1) * 1000
    win = [s for s in samples if lo <= s[0] <= hi]
    if len(win) >= 2:
        rec["m_steady_pct"] = 100 * (win[-1][1] - win[0][1]) / tck / ((win[-1][0] - win[0][0]) / 1000)
except Exception as e:
    rec["report_error"] = str(e)
try:
    s = json.load(open(os.path.join(d, "sim.json")))
    rec["sim_requests"] = s["requests_sent"]
    rec["sim_msgs"] = s["stats_messages"] + s["final_messages"]
    rec["sim_msg_kb"] = s["mean_stats_bytes"] / 1024
    rec["sim_lag_ms"] = s["stats_lag_max_ms"]
    rec["sim_send_fail"] = s["send_failures"]
except Exception as e:
    rec["sim_error"] = str(e)
print(" ".join(f"{k}={shlex.quote(str(v))}" for k, v in rec.items()))
EOF
  sleep 2
done

MASTER_INFO="master built $(date -r "$BIN/master" '+%F %T'), $(git -C "$ROOT" log -1 --format='HEAD %h' 2>/dev/null)"
$PY - "$OUT/records" "$TABLE" "$DURATION" "$RATE" "$MASTER_INFO" <<'EOF'
import shlex, sys
records, table, duration, rate, master_bin = sys.argv[1:]
rows = []
for line in open(records):
    rows.append(dict(kv.split("=", 1) for kv in shlex.split(line)))
def f(r, k, fmt="{:.1f}"):
    v = r.get(k)
    if v in (None, ""):
        return "-"
    try:
        return fmt.format(float(v))
    except ValueError:
        return v
out = []
out.append(f"Master scale: {master_bin}; {duration} s runs, 20 steps, ~{rate} samples per step per second per simulated worker")
out.append("")
hdr = f"{'workers':>7}  {'master':<10}  {'master CPU %':>12}  {'steady CPU %':>12}  {'start s':>7}  {'RSS MB':>6}  {'report requests':>15}  {'simulated requests':>18}  {'equal':>5}  {'done':>5}  {'exit':>4}  {'dropped':>7}  {'sim CPU %':>9}  {'msg KB':>6}  {'load1':>5}"
out.append(hdr)
notes = []
for r in rows:
    if r.get("simulator_failed"):
        out.append(f"{r['n']:>7}  simulator could not bind its ports")
        continue
    eq = "yes" if r.get("report_requests") and r.get("report_requests") == r.get("sim_requests") else "NO"
    out.append(f"{r['n']:>7}  {r.get('how','-'):<10}  {f(r,'m_cpu_pct'):>12}  {f(r,'m_steady_pct'):>12}  {f(r,'start_s','{:.2f}'):>7}  {f(r,'m_rss_mb','{:.0f}'):>6}  "
               f"{r.get('report_requests','-'):>15}  {r.get('sim_requests','-'):>18}  {eq:>5}  {r.get('workers_done','-'):>5}  {r.get('exit','-'):>4}  "
               f"{r.get('report_dropped','-'):>7}  {f(r,'sim_cpu_pct'):>9}  {f(r,'sim_msg_kb'):>6}  {r.get('load1','-'):>5}")
    if r.get("note"):
        notes.append(f"  N={r['n']}: {r['note']}")
    if r.get("sim_send_fail") not in (None, "0"):
        notes.append(f"  N={r['n']}: simulator send failures {r['sim_send_fail']}")
    if r.get("report_error"):
        notes.append(f"  N={r['n']}: no usable report: {r['report_error']}")
out.append("")
out.append("master: as is, or how it was finally run when it could not start as is (shim: LD_PRELOAD")
out.append("  zmq_max_sockets_shim.so raising ZMQ_MAX_SOCKETS; ct: a longer --connect-timeout); see notes.")
out.append("master CPU %: (user + system) / wall over the master's whole life, % of one core (GNU time).")
out.append("steady CPU %: the same over t0 + 2 s .. end - 1 s of the run (/proc samples).")
out.append("start s: master launch to the common start t0 (handshake, Welcome/Prepare, Ready barrier).")
out.append("equal: report.json totals.requests == requests in every Stats/Final the simulator sent.")
out.append("done: workers with state done in report.json; dropped: control_messages_dropped.")
out.append("sim CPU %: the simulator's own CPU (it shares the 2 cores); msg KB: mean Stats body size.")
if notes:
    out.append("notes:")
    out.extend(notes)
text = "\n".join(out) + "\n"
print(text, end="")
open(table, "w").write(text)
EOF
echo "master_scale: table in $TABLE, runs in $OUT" >&2
