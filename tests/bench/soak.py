"""The soak bench's driver (see soak.sh for what it measures and its knobs)."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import stampede_testlib as lib  # noqa: E402

DURATION = int(os.environ["DURATION"])
MODELS = os.environ["MODELS"].split()
RATE = int(os.environ["RATE"])
USERS = int(os.environ["USERS"])
SAMPLE = int(os.environ["SAMPLE"])
WARMUP = int(os.environ["WARMUP"] or max(30, DURATION // 10))
OUT = os.environ["SOAK_OUT"]
MAX_GROWTH = 0.05


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def growth(samples, since):
    """RSS growth from warm-up to the end: the median of the first three samples at or after
    `since` against the median of the last three (one sample's noise is not a trend)."""
    after = [kib for t, kib in samples if t >= since and kib]
    if len(after) < 4:
        return None
    med = lambda xs: sorted(xs)[len(xs) // 2]
    return med(after[-3:]) / med(after[:3]) - 1


def scenario(model, url):
    load = (f"load: {{rate: {RATE}/s, duration: {DURATION}s}}" if model == "open"
            else f"load: {{users: {USERS}, duration: {DURATION}s}}")
    think = "" if model == "open" else "\n      - think: 100ms"
    return (f"name: soak-{model}\ntarget: {url}\n{load}\nhalt: {{on_worker_lost: rejoin}}\n"
            f"flows:\n  - name: main\n    steps:\n      - get: /\n        name: main{think}\n")


def soak(model):
    directory = os.path.join(OUT, model)
    os.makedirs(directory, exist_ok=True)
    out_dir = os.path.join(directory, "out")
    lines = []
    ok = True
    with lib.nginx() as server, lib.workers(3, extra_args=["--quiet"]) as ws:
        path = lib.write_scenario(directory, scenario(model, server.url))
        master = lib.start_master(["--workers", ws.hosts_file, "--out", out_dir, "--quiet",
                                   "--heartbeat-timeout", "2s", path], directory)
        started = time.monotonic()
        # (name, pid, since): the restarted worker is a new process, measured on its own.
        procs = [("master", master.pid, 0)] + [(f"worker{i}", d.proc.pid, 0)
                                                for i, d in enumerate(ws.daemons)]
        samples = {name: [] for name, _, _ in procs}
        killed = False
        with open(os.path.join(directory, "rss.csv"), "w") as csv:
            csv.write("elapsed_s,process,pid,rss_kib\n")
            next_sample = 0.0
            while master.poll() is None:
                now = time.monotonic() - started
                if not killed and now >= DURATION / 2:
                    victim = ws[1]
                    victim.kill(signal.SIGKILL)
                    victim.proc.wait()
                    log = os.path.join(ws.dir, "worker1-restarted.log")
                    proc = lib.start_worker_process(
                        ["--listen", f"tcp://{lib.LOOPBACK}:{victim.port}", "--threads", 1,
                         "--quiet"], log)
                    ws.daemons[1] = lib.WorkerDaemon(proc, victim.port, log)
                    procs.append(("worker1-restarted", proc.pid, now))
                    samples["worker1-restarted"] = []
                    killed = True
                    lines.append(f"worker1 killed and restarted at {now:.0f}s")
                if now >= next_sample:
                    for name, pid, _ in procs:
                        kib = rss_kib(pid)
                        if kib is not None:
                            samples[name].append((now, kib))
                            csv.write(f"{now:.0f},{name},{pid},{kib}\n")
                    csv.flush()
                    next_sample += SAMPLE
                time.sleep(0.5)
        rc, out, err = lib.finish_master(master, directory, 30)
        lib.wait_access_log_stable(server.access_log)
        nginx_count = lib.count_access_log_lines(server.access_log)
        access_log_bytes = os.path.getsize(server.access_log)
    lines.append(f"master exit {rc}")
    if rc != 0:
        ok = False
        lines.append(err[-2000:])
    report = lib.load_report(out_dir)
    total = report["totals"]["requests"]
    events = {w["address"]: w["events"] for w in report["workers"]}
    est = [w["unreported_requests_estimate"] for w in report["workers"]
           if w["unreported_requests_estimate"]]
    low = sum(e["low"] for e in est)
    high = sum(e["high"] for e in est)
    missing = nginx_count - total
    totals_ok = low - 2 <= missing <= high + 2
    ok = ok and totals_ok
    lines.append(f"requests: nginx {nginx_count}, report totals {total}, difference {missing} "
                 f"(the killed process's unreported estimate {low}..{high}): "
                 f"{'ok' if totals_ok else 'FAIL'}")
    lines.append(f"events: {events}")
    for name, _, since in procs:
        g = growth(samples[name], since + WARMUP)
        first = samples[name][0][1] if samples[name] else None
        last = samples[name][-1][1] if samples[name] else None
        verdict = "n/a (too few samples)" if g is None else (
            "ok" if g < MAX_GROWTH else "FAIL")
        ok = ok and (g is None or g < MAX_GROWTH)
        gs = "n/a" if g is None else f"{g * 100:+.1f} %"
        lines.append(f"RSS {name}: first {first} KiB, last {last} KiB, growth after "
                     f"warm-up {gs}: {verdict}")
    sizes = {name: os.path.getsize(os.path.join(out_dir, name))
             for name in sorted(os.listdir(out_dir))}
    sizes["nginx access.log"] = access_log_bytes
    lines.append("output sizes (bytes): " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    text = f"== soak {model}, {DURATION}s, warm-up {WARMUP}s\n" + "\n".join(lines) + "\n"
    with open(os.path.join(directory, "summary.txt"), "w") as f:
        f.write(text)
    print(text, flush=True)
    return ok


def main():
    results = [soak(model) for model in MODELS]
    print("soak:", "PASS" if all(results) else "FAIL")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
