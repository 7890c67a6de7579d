#!/usr/bin/python3
"""Helpers for tests/bench/throughput.sh (stdlib only; run with Debian's /usr/bin/python3).

    benchlib.py free-port                       a port free a moment ago on 127.0.0.1
    benchlib.py stub PORT                       "<accepts> <requests>" from nginx stub_status
    benchlib.py parse TOOL RUN_DIR              key=value results of one run (shell-quoted)
    benchlib.py summary < RECORD_LINE           one progress line (and the run's note, if any)
    benchlib.py report RAW_FILE OUT_FILE [HEADER] the tables, printed and written with the raw records

A run directory holds `stdout`, `stderr`, `time` (GNU time "%e %U %S %M", last line) and, for
Stampede, `out/report.json`. RAW_FILE has one run per line as shell-quoted key=value pairs.
"""

import json
import os
import re
import shlex
import socket
import sys
import urllib.request

LOOPBACK = "127.0.0.1"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def stub(port):
    """(accepts, requests) counters of nginx's stub_status at /__status."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/__status", timeout=5) as r:
        text = r.read().decode()
    # Active connections: 1 \nserver accepts handled requests\n 12 12 34 \nReading: ...
    numbers = text.splitlines()[2].split()
    return int(numbers[0]), int(numbers[2])


def _read(path, limit=None):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return text if limit is None else text[-limit:]


def _time_line(run_dir):
    """(wall, user, sys, maxrss_kb) from GNU time's output, or Nones."""
    lines = [l for l in _read(os.path.join(run_dir, "time")).splitlines() if l.strip()]
    for line in reversed(lines):
        parts = line.split()
        if len(parts) == 4:
            try:
                return float(parts[0]), float(parts[1]), float(parts[2]), int(parts[3])
            except ValueError:
                pass
    return None, None, None, None


def _ms(value, unit):
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_stampede(run_dir):
    out = {}
    path = os.path.join(run_dir, "out", "report.json")
    try:
        with open(path) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        out["note"] = f"no usable report.json ({e.__class__.__name__})"
        return out
    totals = report.get("totals") or {}
    latency = totals.get("latency_ms") or {}
    out.update(requests=totals.get("requests"), errors=totals.get("errors"),
               cancelled=totals.get("cancelled"), p50_ms=latency.get("p50"),
               p99_ms=latency.get("p99"), run_s=report.get("duration_s"),
               outcome=report.get("outcome"), exit_code=report.get("exit_code"))
    notes = []
    if report.get("outcome") != "passed":
        notes.append(f"outcome={report.get('outcome')}")
    halt = report.get("halt")
    if halt:
        notes.append("halt: " + ", ".join(f"{k}={v}" for k, v in halt.items()))
    first = report.get("first_error")
    if first:
        keys = ("kind", "error_kind", "status", "step", "message", "url")
        notes.append("first_error: " + ", ".join(
            f"{k}={first[k]}" for k in keys if first.get(k) not in (None, "")))
    kinds = {}
    for step in report.get("steps") or []:
        for kind, count in (step.get("errors_by_kind") or {}).items():
            kinds[kind] = kinds.get(kind, 0) + count
    if kinds:
        notes.append("errors_by_kind: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    if notes:
        out["note"] = "; ".join(notes)
    return out


def parse_wrk(run_dir):
    text = _read(os.path.join(run_dir, "stdout"))
    out = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+)", text, re.M)
    if not m:
        out["note"] = "no 'N requests in' line in wrk output"
        return out
    out["requests"] = int(m.group(1))
    out["run_s"] = _ms(m.group(2), m.group(3)) / 1000.0
    errors = 0
    notes = []
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        connect, read, write, timeout = (int(x) for x in m.groups())
        # wrk counts a keep-alive close at the end of the run as a read error; keep them apart.
        errors += connect + write + timeout
        notes.append(f"socket errors: connect {connect}, read {read}, write {write}, "
                     f"timeout {timeout}")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
        notes.append(f"non-2xx/3xx {m.group(1)}")
    out["errors"] = errors
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if m:
            out[key] = round(_ms(m.group(1), m.group(2)), 3)
    if notes:
        out["note"] = "; ".join(notes)
    return out


def parse_h2load(run_dir):
    text = _read(os.path.join(run_dir, "stdout"))
    out = {}
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if not m:
        out["note"] = "no 'requests:' line in h2load output"
        return out
    total, started, done, succeeded, failed, errored, timeout = (int(x) for x in m.groups())
    out["requests"] = done
    errors = failed + errored + timeout
    notes = []
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        non2xx = sum(int(x) for x in m.groups()[1:])
        if non2xx:
            notes.append(f"non-2xx {non2xx}")
        errors += non2xx
    if failed or errored or timeout:
        notes.append(f"failed {failed}, errored {errored}, timeout {timeout}")
    out["errors"] = errors
    m = re.search(r"^finished in ([\d.]+)(\w+),", text, re.M)
    if m:
        out["run_s"] = _ms(m.group(1), m.group(2)) / 1000.0
    # h2load gives no percentiles: its mean time per request stands in the p50 column.
    m = re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", text, re.M)
    if m:
        out["mean_ms"] = round(_ms(m.group(1), m.group(2)), 3)
    if notes:
        out["note"] = "; ".join(notes)
    return out


def parse_locust(run_dir):
    text = _read(os.path.join(run_dir, "stdout")) + "\n" + _read(os.path.join(run_dir, "stderr"))
    out = {}
    rows = re.findall(r"^\s*Aggregated\s+(.*)$", text, re.M)
    notes = []
    if not rows:
        out["note"] = "no Aggregated line in the Locust summary (Locust did not cope)"
        return out
    m = re.match(r"(\d+)\s+(\d+)\(", rows[0])
    if m:
        out["requests"], out["errors"] = int(m.group(1)), int(m.group(2))
    if len(rows) > 1:
        cols = rows[1].split()
        # 50% 66% 75% 80% 90% 95% 98% 99% 99.9% 99.99% 100% # reqs
        if len(cols) >= 8:
            out["p50_ms"], out["p99_ms"] = cols[0], cols[7]
    if "All users spawned" not in text:
        notes.append("not all users were spawned")
    cpu_warnings = len(re.findall(r"CPU usage above", text))
    if cpu_warnings:
        notes.append("Locust warned its CPU usage was above 90%")
    tracebacks = len(re.findall(r"Traceback", text))
    if tracebacks:
        notes.append(f"{tracebacks} tracebacks")
    m = re.search(r"Too many open files|Cannot assign requested address|ConnectionRefused", text)
    if m:
        notes.append(m.group(0))
    if notes:
        out["note"] = "; ".join(notes)
    return out


def parse(tool, run_dir):
    wall, user, sys_, rss = _time_line(run_dir)
    out = {"wall_s": wall, "user_s": user, "sys_s": sys_, "maxrss_kb": rss}
    if tool.startswith("stampede"):
        out.update(parse_stampede(run_dir))
    elif tool == "wrk":
        out.update(parse_wrk(run_dir))
    elif tool == "locust":
        out.update(parse_locust(run_dir))
    elif tool == "h2load":
        out.update(parse_h2load(run_dir))
    else:
        raise SystemExit(f"unknown tool {tool}")
    return " ".join(f"{k}={shlex.quote(str(v))}" for k, v in out.items() if v is not None)


# --------------------------------------------------------------------------------------------
# report

def _records(raw_file):
    records = []
    with open(raw_file) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                records.append(dict(item.split("=", 1) for item in shlex.split(line)))
    return records


def _num(record, key):
    try:
        return float(record[key])
    except (KeyError, ValueError):
        return None


def _cpu(record):
    user, sys_ = _num(record, "user_s"), _num(record, "sys_s")
    return None if user is None or sys_ is None else user + sys_


def _per_cpu(record):
    cpu, requests = _cpu(record), _num(record, "requests")
    if not cpu or requests is None:
        return None
    return requests / cpu


def _fmt(value, spec="{:,.0f}", missing="-"):
    return missing if value is None else spec.format(value)


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths)))
             for row in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def _throughput_table(runs, base_tool, title, notes):
    """The lines of one throughput table, each run's ratio to `base_tool` at the same size."""
    base_per_cpu = {r["conns"]: _per_cpu(r) for r in runs if r["tool"] == base_tool}
    rows = []
    for r in runs:
        cpu, wall = _cpu(r), _num(r, "wall_s")
        per_cpu = _per_cpu(r)
        base = base_per_cpu.get(r["conns"])
        ratio = per_cpu / base if per_cpu and base else None
        run_s = _num(r, "run_s") or _num(r, "dur_s")
        requests = _num(r, "requests")
        rps = requests / run_s if requests is not None and run_s else None
        nginx_cpu = _num(r, "nginx_cpu_s")
        p50 = _num(r, "p50_ms")
        rows.append([
            r["tool"], f"{int(r['conns']):,}", r.get("ramp", "-"), _fmt(requests),
            _fmt(_num(r, "errors")), _fmt(rps), _fmt(cpu, "{:.2f}"),
            _fmt(cpu / wall * 100 if cpu and wall else None, "{:.0f}%"), _fmt(per_cpu),
            _fmt(ratio, "{:.2f}x"),
            _fmt(p50, "{:.2f}") if p50 is not None else _fmt(_num(r, "mean_ms"), "{:.2f}*"),
            _fmt(_num(r, "p99_ms"), "{:.2f}"),
            _fmt(nginx_cpu / run_s * 100 if nginx_cpu is not None and run_s else None, "{:.0f}%"),
            _fmt(_num(r, "server_accepts")), r.get("load1", "-")])
        if r.get("rc") not in ("0", None) or r.get("note"):
            notes.append(f"{r['tool']} @ {r['conns']}: exit {r.get('rc')}"
                         + (f"; {r['note']}" if r.get("note") else ""))
    if not rows:
        return []
    lines = [title]
    lines += _table(["tool", "conns", "ramp", "requests", "errors", "req/s", "client CPU s",
                     "CPU%", "req/CPU-s", f"vs {base_tool}", "p50 ms", "p99 ms", "nginx CPU%",
                     "srv conns", "load1"], rows)
    if any(r["tool"] == "h2load" for r in runs):
        lines.append("(* h2load reports no percentiles: its mean time per request)")
    lines.append("")
    return lines


def report(raw_file, out_file, header_file=None):
    records = _records(raw_file)
    lines = []
    if header_file and os.path.exists(header_file):
        lines += _read(header_file).rstrip("\n").splitlines() + [""]

    notes = []
    for kind, base_tool, title in (
            ("tput", "wrk", "Throughput: completed requests per client CPU-second "
                            "(client pinned to one core, nginx to another)"),
            ("h2", "h2load", "HTTP/2 over TLS (h2 by ALPN, one stream per connection): "
                             "completed requests per client CPU-second")):
        lines += _throughput_table([r for r in records if r.get("kind") == kind], base_tool,
                                   title, notes)

    mem = [r for r in records if r.get("kind") == "mem"]
    base_rss = {r["tool"]: _num(r, "maxrss_kb") for r in mem if r["conns"] == "1"}
    rows = []
    for r in mem:
        if r["conns"] == "1":
            continue
        users = int(r["conns"])
        rss, base = _num(r, "maxrss_kb"), base_rss.get(r["tool"])
        net = (rss - base) / (users - 1) if rss is not None and base is not None else None
        # Coped: ran to its end, completed requests, and held all N connections open at nginx.
        why = []
        if r.get("rc") != "0":
            why.append(f"exit {r.get('rc')}")
        if r.get("requests") in (None, "0"):
            why.append("no requests")
        accepts = _num(r, "server_accepts")
        if accepts is not None and accepts < 0.99 * users:
            why.append(f"{accepts:,.0f} conns")
        if "not all users were spawned" in r.get("note", ""):
            why.append("not all spawned")
        rows.append([r["tool"], f"{users:,}", r.get("ramp", "-"), _fmt(_num(r, "requests")),
                     _fmt(_num(r, "errors")), _fmt(rss / 1024 if rss else None, "{:.1f}"),
                     _fmt(base / 1024 if base else None, "{:.1f}"),
                     _fmt(rss / users if rss else None, "{:.1f}"), _fmt(net, "{:.1f}"),
                     "NO (" + ", ".join(why) + ")" if why else "yes"])
        if r.get("rc") not in ("0", None) or r.get("note"):
            notes.append(f"{r['tool']} @ {users} users (memory run): exit {r.get('rc')}"
                         + (f"; {r['note']}" if r.get("note") else ""))
    for r in mem:
        if r["conns"] == "1" and (r.get("rc") not in ("0", None) or r.get("note")):
            notes.append(f"{r['tool']} @ 1 user (memory baseline): exit {r.get('rc')}"
                         + (f"; {r['note']}" if r.get("note") else ""))
    if rows:
        lines.append("Memory: peak RSS (GNU time maxrss) with N virtual users / connections; "
                     "net = (peak - peak with 1 user) / (N - 1)")
        lines += _table(["tool", "users", "ramp", "requests", "errors", "peak RSS MB",
                         "1-user RSS MB", "KB/user gross", "KB/user net", "coped"], rows)
        lines.append("")

    if notes:
        lines.append("Notes per run:")
        lines += [f"  - {n}" for n in notes]
        lines.append("")

    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out_file, "w") as f:
        f.write(text)
        f.write("\nRaw records (one run per line):\n")
        f.write(_read(raw_file))


def summary(line):
    """The progress line of one raw record, and its note on a second line if it has one."""
    r = dict(item.split("=", 1) for item in shlex.split(line))
    cpu = _cpu(r) or 0.0
    requests = int(_num(r, "requests") or 0)
    rss = (_num(r, "maxrss_kb") or 0) / 1024
    text = (f"{requests:,} requests, {r.get('errors', '?')} errors, client CPU {cpu:.2f} s, "
            f"{requests / cpu if cpu else 0:,.0f} req/CPU-s, peak RSS {rss:.1f} MB")
    if r.get("note"):
        text += "\n" + r["note"]
    return text


def main(argv):
    if len(argv) >= 2 and argv[1] == "free-port":
        print(free_port())
    elif len(argv) == 3 and argv[1] == "stub":
        try:
            accepts, requests = stub(int(argv[2]))
            print(accepts, requests)
        except (OSError, IndexError, ValueError):
            print("NA NA")
    elif len(argv) == 4 and argv[1] == "parse":
        print(parse(argv[2], argv[3]))
    elif len(argv) == 2 and argv[1] == "summary":
        print(summary(sys.stdin.read()))
    elif len(argv) in (4, 5) and argv[1] == "report":
        report(argv[2], argv[3], argv[4] if len(argv) == 5 else None)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
