#!/usr/bin/python3
"""Helpers for tests/bench/halt_latency.sh (stdlib only).

    halt_analyze.py free-port                 a port free a moment ago on 127.0.0.1
    halt_analyze.py stampede RUN_DIR          one record line (shell-quoted key=value) for a run
    halt_analyze.py locust RUN_DIR            the same for a Locust run
    halt_analyze.py table RECORDS OUT_FILE    the comparison table, printed and written

A Stampede run directory holds out/report.json, target.log and rc; a Locust run directory holds
master.json and worker-*.json (written by halt_locustfile.py), target.log and rc.

target.log is fault_target's --log: `<mono_ms> <wall_ms> <method> <target> <status>
<received_ns> <answered_ns>` per request, written when the request is answered (the target
answers at once, so this is within a fraction of a millisecond of its arrival); the last two
are steady-clock (CLOCK_MONOTONIC) nanoseconds, the master's clock on this host.

Per run:
  halt_sent_ms     failing response -> the stop order leaves the master. Stampede: report.json
                   halt.halt_sent_ms. Locust: the first "quit" sent by the master, minus the
                   earliest failing response seen by any worker's request listener.
  all_stopped_ms   failing response -> every worker stopped. Stampede: report.json
                   halt.all_stopped_ms (to the master's receipt of the last worker's Final).
                   Locust: the last worker's test_stop (its users' greenlets all stopped).
  sent_after       Stampede: halt.requests_sent_after_first_error (the workers' send stamps at
                   or after the first error's moment, put on the master's clock).
  target_after     Stampede: requests the target received at or after that moment
                   (halt.first_error_monotonic_ns, against the log's received_ns).
  after_stop       requests the target answered more than 1 ms after the stop order left the
                   master (1 ms: the log's resolution); for both tools from the target's log.
  after_first_500  requests the target answered after it answered its first 500.
"""

import glob
import json
import math
import os
import shlex
import socket
import sys
from datetime import datetime, timezone


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_log(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 5:
                    rows.append((int(parts[1]), parts[4]))
    except FileNotFoundError:
        pass
    return rows


def target_counts(rows, stop_wall_ms):
    first_500 = next((i for i, r in enumerate(rows) if r[1] == "500"), None)
    out = {
        "target_requests": len(rows),
        "target_500s": sum(1 for r in rows if r[1] == "500"),
        "after_first_500": (len(rows) - first_500 - 1) if first_500 is not None else "",
    }
    if stop_wall_ms is not None:
        out["after_stop"] = sum(1 for r in rows if r[0] > stop_wall_ms + 1)
    return out


def read_rc(run_dir):
    try:
        return open(os.path.join(run_dir, "rc")).read().strip()
    except FileNotFoundError:
        return ""


def iso_ms(text):
    t = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return t.timestamp() * 1000


def stampede(run_dir):
    rec = {"tool": "stampede", "rc": read_rc(run_dir)}
    try:
        r = json.load(open(os.path.join(run_dir, "out", "report.json")))
    except Exception as e:  # no report: the record says why
        rec["error"] = f"no report.json: {e}"
        return rec
    halt = r.get("halt") or {}
    first = r.get("first_error") or {}
    rec.update(
        outcome=r.get("outcome"),
        reason=halt.get("reason"),
        halt_sent_ms=halt.get("halt_sent_ms"),
        all_stopped_ms=halt.get("all_stopped_ms"),
        sent_after=halt.get("requests_sent_after_first_error"),
        clock_error_ms=halt.get("clock_error_ms"),
        cancelled=halt.get("cancelled"),
        also_failed=len(halt.get("also_failed") or []),
        status=first.get("status"),
        requests=r["totals"]["requests"],
    )
    stop_wall = None
    if first.get("at") and halt.get("halt_sent_ms") is not None:
        stop_wall = iso_ms(first["at"]) + halt["halt_sent_ms"]
    rec.update(target_counts(read_log(os.path.join(run_dir, "target.log")), stop_wall))
    moment_ns = halt.get("first_error_monotonic_ns")
    if moment_ns is not None:
        rec["target_after"] = received_from(os.path.join(run_dir, "target.log"), moment_ns)
    return rec


def received_from(path, moment_ns):
    """Requests fault_target received at or after `moment_ns` (its received_ns column)."""
    count = 0
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 7 and int(parts[5]) >= moment_ns:
                    count += 1
    except FileNotFoundError:
        pass
    return count


def locust(run_dir):
    rec = {"tool": "locust", "rc": read_rc(run_dir)}
    workers = []
    for p in sorted(glob.glob(os.path.join(run_dir, "worker-*.json"))):
        try:
            workers.append(json.load(open(p)))
        except Exception:
            pass
    try:
        m = json.load(open(os.path.join(run_dir, "master.json")))
    except Exception as e:
        m = {}
        rec["error"] = f"no master.json: {e}"
    fails = [w["first_failure"] for w in workers if w.get("first_failure")]
    stopped = [w["stopped"] for w in workers if w.get("stopped")]
    rec["workers_reported"] = len(workers)
    rec["workers_stopped"] = len(stopped)
    rec["halt_messages"] = m.get("halt_messages")
    t_fail = min(fails) if fails else None
    if t_fail is not None and m.get("quit_sent_first"):
        rec["halt_sent_ms"] = (m["quit_sent_first"] - t_fail) * 1000
        rec["message_ms"] = (m["message_received"] - t_fail) * 1000
        rec["quit_sent_last_ms"] = (m["quit_sent_last"] - t_fail) * 1000
    if t_fail is not None and len(stopped) == 8:
        rec["all_stopped_ms"] = (max(stopped) - t_fail) * 1000
    stop_wall = m["quit_sent_first"] * 1000 if m.get("quit_sent_first") else None
    rec.update(target_counts(read_log(os.path.join(run_dir, "target.log")), stop_wall))
    return rec


def percentile(values, p):
    """Nearest rank: with 50 runs p99 is the largest; with 20, p99 is the largest too."""
    v = sorted(values)
    if not v:
        return None
    rank = max(1, math.ceil(p / 100 * len(v)))
    return v[rank - 1]


def table(records, out_file):
    rows = [dict(kv.split("=", 1) for kv in shlex.split(line)) for line in open(records) if line.strip()]
    by_tool = {"stampede": [r for r in rows if r.get("tool") == "stampede"],
               "locust": [r for r in rows if r.get("tool") == "locust"]}

    def nums(tool, key):
        out = []
        for r in by_tool[tool]:
            try:
                out.append(float(r[key]))
            except (KeyError, ValueError):
                pass
        return out

    def cell(tool, key, fmt):
        v = nums(tool, key)
        if not v:
            return f"{'-':>8} {'-':>8} {'-':>8}"
        return " ".join(f"{fmt.format(percentile(v, p)):>8}" for p in (50, 99, 100))

    lines = []
    s, l = by_tool["stampede"], by_tool["locust"]
    lines.append(f"Halt latency: 8 workers on loopback vs fault_target /fail-after/N, 16 users, "
                 f"stop on the first error; Stampede {len(s)} runs, Locust {len(l)} runs")
    lines.append("")
    lines.append(f"{'':34} {'Stampede':^26}   {'Locust (listener + quit())':^26}")
    lines.append(f"{'':34} {'p50':>8} {'p99':>8} {'max':>8}   {'p50':>8} {'p99':>8} {'max':>8}")
    metrics = [
        ("failing response -> stop sent ms", "halt_sent_ms", "{:.2f}"),
        ("failing response -> all stopped ms", "all_stopped_ms", "{:.2f}"),
        ("sent after the first error", "sent_after", "{:.0f}"),
        ("target: received after it", "target_after", "{:.0f}"),
        ("clock error bound ms", "clock_error_ms", "{:.3f}"),
        ("target: requests after stop sent", "after_stop", "{:.0f}"),
        ("target: requests after first 500", "after_first_500", "{:.0f}"),
    ]
    for label, key, fmt in metrics:
        lines.append(f"{label:34} {cell('stampede', key, fmt)}   {cell('locust', key, fmt)}")
    lines.append("")
    lines.append("p50/p99 are nearest-rank over the runs (with 50 or fewer runs, p99 is the largest).")
    lines.append("stop sent: Stampede's Halt broadcast (halt.halt_sent_ms); Locust's first \"quit\" message.")
    lines.append("all stopped: Stampede, the last worker's Final received by the master "
                 "(halt.all_stopped_ms); Locust, the last worker's test_stop (greenlets stopped).")
    lines.append("sent after the first error: Stampede's own count (halt.requests_sent_after_first_error), "
                 "and what the target received from that moment on (same clock); Locust has no such count.")
    lines.append("target: from fault_target's log (1 ms resolution; answered > 1 ms after the stop was sent / "
                 "after its first 500).")

    notes = []
    bad = [r for r in s if r.get("rc") != "1" or r.get("outcome") != "halted" or r.get("status") != "500"]
    if bad:
        notes.append(f"Stampede: {len(bad)} run(s) not a clean halt on a 500: "
                     + "; ".join(f"rc={r.get('rc')} outcome={r.get('outcome')} status={r.get('status')} "
                                 f"{r.get('error', '')}" for r in bad[:5]))
    pairs = [(int(r["sent_after"]), int(r["target_after"])) for r in s
             if r.get("sent_after") not in (None, "", "None") and r.get("target_after") is not None]
    if pairs:
        notes.append("Stampede: target minus report, requests after the first error: "
                     + ", ".join(str(t - m) for m, t in pairs[:20])
                     + " (in flight at that moment: at most one per user)")
    if l:
        incomplete = [r for r in l if r.get("workers_stopped") != "8" or "halt_sent_ms" not in r]
        if incomplete:
            notes.append(f"Locust: {len(incomplete)} run(s) without a complete record: "
                         + "; ".join(f"rc={r.get('rc')} workers_stopped={r.get('workers_stopped')} "
                                     f"{r.get('error', '')}" for r in incomplete[:5]))
        mm = nums("locust", "message_ms")
        if mm:
            notes.append("Locust: failing response -> master's handler got the message, ms: p50 "
                         f"{percentile(mm, 50):.2f}, max {max(mm):.2f}")
        hm = nums("locust", "halt_messages")
        if hm:
            notes.append(f"Locust: \"halt\" messages the master received per run: p50 {percentile(hm, 50):.0f}, "
                         f"max {max(hm):.0f} (one per worker that failed before it stopped)")
    for tool in ("stampede", "locust"):
        t5 = nums(tool, "target_500s")
        if t5:
            notes.append(f"{tool}: 500s answered by the target per run: p50 {percentile(t5, 50):.0f}, max {max(t5):.0f}")
    if notes:
        lines.append("notes:")
        lines.extend("  " + n for n in notes)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(out_file, "w") as f:
        f.write(text)


def main(argv):
    if len(argv) >= 2 and argv[1] == "free-port":
        print(free_port())
    elif len(argv) == 3 and argv[1] in ("stampede", "locust"):
        rec = stampede(argv[2]) if argv[1] == "stampede" else locust(argv[2])
        print(" ".join(f"{k}={shlex.quote('' if v is None else str(v))}" for k, v in rec.items()))
    elif len(argv) == 4 and argv[1] == "table":
        table(argv[2], argv[3])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
