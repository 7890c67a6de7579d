#!/usr/bin/env bash
# HTTP/2 benchmark: Stampede's nghttp2 engine against h2load (Debian nghttp2-client) on the same
# nginx, h2 over TLS, all on 127.0.0.1.
#
#   bash tests/bench/h2.sh [BUILD_DIR]        (default BUILD_DIR: build/)
#
# nginx (1 worker, `GET /` of a small file, access log off) is pinned to SERVER_CPU and the
# client to CLIENT_CPU. For each point (connections x streams per connection) both tools run for
# DURATION seconds under GNU time; the figure is completed requests per client CPU-second
# (user + sys) and Stampede's ratio to h2load. Memory: peak RSS per connection (1,000 vs 50
# connections, one stream each) and per stream (1,000 connections, 10 vs 1 streams).
# Results go to stdout and BUILD_DIR/bench/h2.txt; each run's output stays in
# BUILD_DIR/bench/h2-runs/. Not part of `make test`. Every process is bounded by `timeout`.
#
# Environment (defaults in brackets):
#   DURATION [5]  CONNECTIONS ["50 1000"]  STREAMS ["1 10"]  SERVER_CPU [0]  CLIENT_CPU [1]
#   PAUSE [2]     seconds between runs;  RAMP_FROM [1000]  Stampede ramps 1 s from this many
#   connections (1,000 TLS handshakes at once overflow nginx's accept queue on a loaded machine)
#   REQUESTS [unset]  a fixed count instead of DURATION: each tool makes REQUESTS per connection
#   (h2load -n, Stampede load.iterations), so that on a busy machine both divide the same
#   start-up (handshakes) by the same count of requests
#   BASELINE [unset]  another build's bin/ (e.g. main's): run it too at each point, in the same
#   run, and give Stampede's ratio to it
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
BUILD_DIR=$(realpath -m "${1:-$SOURCE/build}")
export MASTER="$BUILD_DIR/bin/master"
export DURATION=${DURATION:-5}
export CONNECTIONS=${CONNECTIONS:-50 1000}
export STREAMS=${STREAMS:-1 10}
export SERVER_CPU=${SERVER_CPU:-0}
export CLIENT_CPU=${CLIENT_CPU:-1}
export PAUSE=${PAUSE:-2}
export REQUESTS=${REQUESTS:-}
export OUT_DIR="$BUILD_DIR/bench"
export BASELINE_MASTER=""
if [[ -n ${BASELINE:-} ]]; then
  BASELINE_MASTER="$(realpath -m "$BASELINE")/master"
  [[ -x "$BASELINE_MASTER" ]] || { echo "h2.sh: no $BASELINE_MASTER" >&2; exit 1; }
fi

for tool in h2load nginx taskset openssl /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "h2.sh: $tool is missing (deploy/install-deps.sh)" >&2; exit 1; }
done
[[ -x "$MASTER" ]] || { echo "h2.sh: no $MASTER (build first)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || true
mkdir -p "$OUT_DIR"

exec python3 - "$@" <<'PYTHON'
import json, os, re, shutil, signal, socket, subprocess, sys, tempfile, time

MASTER = os.environ["MASTER"]
BASELINE_MASTER = os.environ["BASELINE_MASTER"]
DURATION = int(os.environ["DURATION"].rstrip("s"))
CONNECTIONS = [int(c) for c in os.environ["CONNECTIONS"].split()]
STREAMS = [int(s) for s in os.environ["STREAMS"].split()]
SERVER_CPU, CLIENT_CPU = os.environ["SERVER_CPU"], os.environ["CLIENT_CPU"]
PAUSE = float(os.environ["PAUSE"])
REQUESTS = int(os.environ["REQUESTS"]) if os.environ["REQUESTS"] else None
RUN_LIMIT = DURATION + 60 if REQUESTS is None else 600
RAMP_FROM = int(os.environ.get("RAMP_FROM", "1000"))
OUT_DIR = os.environ["OUT_DIR"]
RUNS = os.path.join(OUT_DIR, "h2-runs")
shutil.rmtree(RUNS, ignore_errors=True)
os.makedirs(RUNS)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(prefix):
    cert, key = os.path.join(prefix, "cert.pem"), os.path.join(prefix, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    os.makedirs(os.path.join(prefix, "html"))
    os.makedirs(os.path.join(prefix, "tmp"))
    with open(os.path.join(prefix, "html", "index.html"), "w") as f:
        f.write("<html><body>stampede h2 bench</body></html>\n")
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""{user}worker_processes 1;
worker_rlimit_nofile 65536;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 20000; multi_accept on; }}
http {{
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  http2_max_concurrent_streams 128;
  client_body_temp_path {prefix}/tmp;
  server {{
    listen 127.0.0.1:{port} ssl http2 backlog=4096;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    root {prefix}/html;
  }}
}}
""")
    proc = subprocess.Popen(["timeout", "-s", "QUIT", "3600", "taskset", "-c", SERVER_CPU,
                             "nginx", "-p", prefix, "-c", conf, "-g", "daemon off;"])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    raise SystemExit("h2.sh: nginx did not start")


def timed(cmd, run_dir, timeout):
    """Runs cmd pinned to the client CPU under GNU time: (user+sys CPU s, max RSS KiB)."""
    tfile = os.path.join(run_dir, "time")
    with open(os.path.join(run_dir, "stdout"), "w") as out, \
            open(os.path.join(run_dir, "stderr"), "w") as err:
        subprocess.run(["timeout", "-k", "5", str(timeout), "taskset", "-c", CLIENT_CPU,
                        "/usr/bin/time", "-o", tfile, "-f", "%e %U %S %M", *cmd],
                       stdout=out, stderr=err)
    wall, user, sys_, rss = open(tfile).read().split()[-4:]
    return float(user) + float(sys_), int(rss)


def run_h2load(port, conns, streams):
    run_dir = os.path.join(RUNS, f"h2load-c{conns}-m{streams}")
    os.makedirs(run_dir)
    amount = ["-D", str(DURATION)] if REQUESTS is None else ["-n", str(REQUESTS * conns)]
    cpu, rss = timed(["h2load", "-t", "1", "-c", str(conns), "-m", str(streams), *amount,
                      f"https://127.0.0.1:{port}/"], run_dir, RUN_LIMIT)
    text = open(os.path.join(run_dir, "stdout")).read()
    m = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", text)
    done = int(m.group(2)) if m else 0
    return {"requests": done, "cpu": cpu, "rss": rss, "errors": int(m.group(1)) - done if m else None}


def run_stampede(port, conns, streams, master=MASTER, tool="stampede"):
    run_dir = os.path.join(RUNS, f"{tool}-c{conns}-m{streams}")
    os.makedirs(run_dir)
    users = conns * streams
    # As throughput.sh: 1,000 TLS handshakes at once overflow nginx's accept queue on a loaded
    # machine (SYN retries past http.timeout); a 1 s ramp spreads them. h2load starts at once.
    load = {"users": users, "duration": f"{DURATION}s"}
    if REQUESTS is not None:
        load = {"users": users, "duration": f"{RUN_LIMIT}s", "iterations": REQUESTS * conns}
    if conns >= RAMP_FROM:
        load["ramp"] = "1s"
    scenario = os.path.join(run_dir, "scenario.yaml")
    with open(scenario, "w") as f:
        json.dump({"name": "h2-bench", "target": f"https://127.0.0.1:{port}",
                   "load": load,
                   # h2load waits for a connection as long as it takes: so may Stampede (the
                   # default 5 s is short for 1,000 handshakes on one busy nginx worker).
                   "http": {"version": "2", "tls": {"verify": False}, "timeout": "30s",
                            "h2": {"streams_per_connection": streams}},
                   "flows": [{"name": "get", "steps": [{"get": "/", "name": "home"}]}]}, f)
    cpu, rss = timed([master, "--threads", "1", "--quiet", "--out", os.path.join(run_dir, "out"),
                      scenario], run_dir, RUN_LIMIT)
    try:
        report = json.load(open(os.path.join(run_dir, "out", "report.json")))
        totals = report["totals"]
        return {"requests": totals["requests"], "cpu": cpu, "rss": rss,
                "errors": totals["errors"], "outcome": report.get("outcome")}
    except (OSError, ValueError, KeyError) as e:
        return {"requests": 0, "cpu": cpu, "rss": rss, "errors": None, "outcome": repr(e)}


TOOLS = [("h2load", run_h2load), ("stampede", run_stampede)]
if BASELINE_MASTER:
    TOOLS.append(("baseline", lambda port, conns, streams: run_stampede(
        port, conns, streams, master=BASELINE_MASTER, tool="baseline")))
prefix = tempfile.mkdtemp(prefix="stampede-h2-bench-")
nginx, port = start_nginx(prefix)
results = {}
try:
    for conns in CONNECTIONS:
        for streams in STREAMS:
            for tool, run in TOOLS:
                r = run(port, conns, streams)
                r["per_cpu_s"] = r["requests"] / r["cpu"] if r["cpu"] else 0
                results[(tool, conns, streams)] = r
                print(f"[h2 bench] {tool:8} c={conns:<5} m={streams:<3} "
                      f"{r['requests']:>9,} req  {r['cpu']:6.2f} CPU-s  "
                      f"{r['per_cpu_s']:>9,.0f} req/CPU-s  rss {r['rss'] / 1024:7.1f} MiB  "
                      f"errors {r.get('errors')} {r.get('outcome') or ''}", flush=True)
                time.sleep(PAUSE)
finally:
    nginx.send_signal(signal.SIGTERM)
    nginx.wait(timeout=30)

amount = f"{DURATION} s per run" if REQUESTS is None else f"{REQUESTS} requests per connection"
lines = [f"HTTP/2 over TLS against nginx (1 worker, CPU {SERVER_CPU}); client on CPU "
         f"{CLIENT_CPU}; {amount}; one run per point.",
         ""]
if BASELINE_MASTER:
    lines += ["| connections | streams each | h2load req/CPU-s | Stampede req/CPU-s | ratio | "
              "baseline req/CPU-s | baseline ratio | Stampede / baseline |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|"]
else:
    lines += ["| connections | streams each | h2load req/CPU-s | Stampede req/CPU-s | ratio |",
              "|---:|---:|---:|---:|---:|"]
for conns in CONNECTIONS:
    for streams in STREAMS:
        h, s = results[("h2load", conns, streams)], results[("stampede", conns, streams)]
        ratio = s["per_cpu_s"] / h["per_cpu_s"] if h["per_cpu_s"] else 0
        line = (f"| {conns:,} | {streams} | {h['per_cpu_s']:,.0f} | {s['per_cpu_s']:,.0f} | "
                f"{ratio:.2f}x |")
        if BASELINE_MASTER:
            b = results[("baseline", conns, streams)]
            b_ratio = b["per_cpu_s"] / h["per_cpu_s"] if h["per_cpu_s"] else 0
            gain = s["per_cpu_s"] / b["per_cpu_s"] if b["per_cpu_s"] else 0
            line += f" {b['per_cpu_s']:,.0f} | {b_ratio:.2f}x | {gain:.2f}x |"
        lines.append(line)
if len(CONNECTIONS) >= 2 and len(STREAMS) >= 2:
    lo, hi = min(CONNECTIONS), max(CONNECTIONS)
    one, many = min(STREAMS), max(STREAMS)
    lines += ["", "| tool | KiB per connection | KiB per stream |", "|---|---:|---:|"]
    for tool in [t for t, _ in TOOLS]:
        per_conn = (results[(tool, hi, one)]["rss"] - results[(tool, lo, one)]["rss"]) / (hi - lo)
        per_stream = ((results[(tool, hi, many)]["rss"] - results[(tool, hi, one)]["rss"]) /
                      (hi * (many - one)))
        lines.append(f"| {tool} | {per_conn:.1f} | {per_stream:.2f} |")
text = "\n".join(lines) + "\n"
print(text)
with open(os.path.join(OUT_DIR, "h2.txt"), "w") as f:
    f.write(text)
    for key, r in results.items():
        f.write(json.dumps({"tool": key[0], "connections": key[1], "streams": key[2], **r}) + "\n")
shutil.rmtree(prefix, ignore_errors=True)
PYTHON
