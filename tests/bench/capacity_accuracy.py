#!/usr/bin/env python3
"""Capacity search accuracy (issue 13): for a few known capacities N of the fault target's
/capacity/N and a few probe lengths, run `master` with a capacity: section on the embedded
worker and print the capacity found against N, the probes and the wall time, with what a hand
search of fixed runs would cost for the same resolution.

    STAMPEDE_BIN=build/bin STAMPEDE_SOURCE=. python3 tests/bench/capacity_accuracy.py [N...]

Not a test: nothing here is registered with ctest. Loopback only."""

import json
import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
import stampede_testlib as lib  # noqa: E402

RESOLUTION = 0.05
START = 50.0
SLO_MS = 25


def search(target, n, probe_s, warmup_s, directory):
    text = (f"name: bench-capacity\ntarget: {target.url}\ncapacity:\n  start: {START:g}/s\n"
            f"  max: 100000/s\n  probe: {probe_s}s\n  warmup: {warmup_s}s\n"
            f"  resolution: {RESOLUTION * 100:g}%\n  confirm: 0\n"
            f"  slo: {{p99: {SLO_MS}ms, error_rate: 1%}}\n  max_lag: 100ms\n"
            f"flows:\n  - name: f\n    steps:\n      - get: /capacity/{n}\n")
    out_dir = os.path.join(directory, f"out-{n}-{probe_s}")
    started = time.monotonic()
    rc, out, err, context = lib.run_local(directory, text, out_dir, args=["--threads", "2"],
                                          timeout=600)
    wall = time.monotonic() - started
    with open(os.path.join(out_dir, "report.json")) as f:
        capacity = json.load(f)["capacity"]
    return rc, capacity, wall


def main():
    ns = [int(a) for a in sys.argv[1:]] or [100, 200, 400]
    print(f"start {START:g}/s, resolution {RESOLUTION:.0%}, SLO p99 {SLO_MS} ms, confirm 0")
    print(f"{'N':>6} {'probe':>6} {'found':>8} {'found/N':>8} {'fail':>8} {'probes':>6} "
          f"{'wall s':>7} {'hand runs':>9} {'hand min':>8}")
    with tempfile.TemporaryDirectory() as directory, lib.fault_target() as target:
        for n in ns:
            for probe_s, warmup_s in ((2, 0.5), (4, 1)):
                rc, c, wall = search(target, n, probe_s, warmup_s, directory)
                probes = len(c["probes"])
                # A hand search to the same resolution: fixed runs stepping up 5 % at a time
                # from the start to the first failure (each run as long as a probe plus the
                # master's ~1 s of handshake, Prepare and report, and a person's turnaround,
                # counted here as 30 s to read the report and edit the rate).
                steps = math.ceil(math.log(max(n, START) / START) / math.log(1 + RESOLUTION)) + 1
                hand_min = steps * (probe_s + 1 + 30) / 60
                found = c["max_passing_rate"]
                print(f"{n:>6} {probe_s:>5}s {found if found else 0:>8.1f} "
                      f"{(found or 0) / n:>8.3f} {c['first_failing_rate'] or 0:>8.1f} "
                      f"{probes:>6} {wall:>7.1f} {steps:>9} {hand_min:>8.1f}  (exit {rc}, "
                      f"{c['limited_by']})")


if __name__ == "__main__":
    main()
