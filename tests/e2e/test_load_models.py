"""End to end, the load models (issue 6): the open model's arrival schedule across workers, its
three histograms and what a stall does to them, max_in_flight dropping instead of queueing, and
the closed model's stages and iteration limit."""

import csv
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402


def timeseries(out_dir):
    with open(os.path.join(out_dir, "timeseries.csv")) as f:
        return list(csv.DictReader(f))


class LoadModelTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def test_open_model_on_two_workers_keeps_the_schedule(self):
        with lib.nginx() as server, lib.workers(2) as ws:
            path = lib.write_scenario(self.tmp, f"""
                name: e2e-open
                target: {server.url}
                load:
                  rate: 400/s
                  duration: 5s
                flows:
                  - steps: [{{get: /, name: home}}]
                """)
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=40)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lines = lib.wait_access_log_stable(server.access_log)
            entries = sorted(e.time for e in lib.parse_access_log(server.access_log))
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        totals = report["totals"]
        self.assertEqual(report["load"]["model"], "open", report["load"])
        started = totals["requests"] + totals["dropped"]
        print(f"\n  open model 400/s x 5 s on 2 workers: {totals['requests']} completed, "
              f"{totals['dropped']} dropped; lag p99 {totals['schedule_lag_ms']['p99']:.2f} ms")
        self.assertLessEqual(abs(started - 2000), 20, f"completed + dropped = {started}\n{context}")
        self.assertEqual(totals["requests"], lines, context)
        for w in report["workers"]:
            self.assertAlmostEqual(w["requests"], 1000, delta=15, msg=report["workers"])
        # Three histograms, per step and in total.
        for key in ("latency_ms", "service_ms", "schedule_lag_ms"):
            self.assertGreater(totals[key]["max"], 0, key)
            self.assertIn(key, report["steps"][0])
        self.assertGreaterEqual(totals["latency_ms"]["p50"], totals["service_ms"]["p50"])
        # Flat after the first second: every full interval within 5 % of the rate. (The last
        # row is the short interval that also carries the workers' final flush.)
        rows = timeseries(self.out())
        full = [r for r in rows[:-1] if float(r["elapsed_s"]) >= 1.5]
        self.assertGreaterEqual(len(full), 3, rows)
        for r in full:
            self.assertLessEqual(abs(float(r["rps"]) - 400), 20, f"not flat: {rows}")
        # Arrivals interleave: nginx sees no burst of both workers at once.
        gaps = [b - a for a, b in zip(entries, entries[1:])]
        gaps.sort()
        median_gap = gaps[len(gaps) // 2]
        self.assertGreater(median_gap, 0.0015, f"median gap {median_gap * 1000:.2f} ms: bursts")

    def test_a_target_stall_shows_in_open_model_p99_and_only_in_closed_max(self):
        with lib.fault_target() as target:
            # The target holds every request that arrives in [3 s, 4 s) of the run until 4 s.
            rc, out, err, open_context = lib.run_local(self.tmp, f"""
                name: e2e-stall-open
                target: {target.url}
                load: {{rate: 200/s, duration: 10s}}
                flows:
                  - steps: [{{get: /stall/3000/1000, name: stall}}]
                """, self.out("open"), timeout=40, name="open.yaml")
        self.assertEqual(rc, 0, open_context)
        with lib.fault_target() as target:
            rc, out, err, closed_context = lib.run_local(self.tmp, f"""
                name: e2e-stall-closed
                target: {target.url}
                load: {{users: 2, duration: 10s}}
                flows:
                  - think: 10ms
                    steps: [{{get: /stall/3000/1000, name: stall}}]
                """, self.out("closed"), timeout=40, name="closed.yaml")
        self.assertEqual(rc, 0, closed_context)
        opened = lib.load_report(self.out("open"))["totals"]
        closed = lib.load_report(self.out("closed"))["totals"]
        print(f"\n  1 s stall: open p99 {opened['latency_ms']['p99']:.0f} ms "
              f"(service p99 {opened['service_ms']['p99']:.0f} ms); closed p99 "
              f"{closed['latency_ms']['p99']:.1f} ms, max {closed['latency_ms']['max']:.0f} ms")
        # Open model: ~200 of ~2000 arrivals fell in the stall, and their latency shows it.
        self.assertGreaterEqual(opened["latency_ms"]["p99"], 500, opened)
        self.assertGreaterEqual(opened["requests"], 1980, opened)
        # Closed model: the two users simply stopped sending; only two requests saw the stall.
        self.assertLess(closed["latency_ms"]["p99"], 100, closed)
        self.assertGreaterEqual(closed["latency_ms"]["max"], 800, closed)

    def test_a_generator_stall_shows_as_schedule_lag_not_service_time(self):
        with lib.nginx() as server, lib.workers(1) as ws:
            path = lib.write_scenario(self.tmp, f"""
                name: e2e-generator-stall
                target: {server.url}
                load: {{rate: 200/s, duration: 8s}}
                flows:
                  - steps: [{{get: /, name: home}}]
                """)
            worker = ws[0].proc

            def freeze():
                # The load generator's host stalls for 1 s (a GC pause, a noisy neighbour).
                time.sleep(3.0)
                os.kill(worker.pid, signal.SIGSTOP)
                time.sleep(1.0)
                os.kill(worker.pid, signal.SIGCONT)

            stopper = threading.Thread(target=freeze)
            stopper.start()
            try:
                rc, out, err = lib.run_master(
                    ["--workers", ws.hosts_file, "--heartbeat-timeout", "5s", "--out", self.out(),
                     "--quiet", path], timeout=40)
            finally:
                stopper.join()
                os.kill(worker.pid, signal.SIGCONT)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        totals = report["totals"]
        print(f"\n  generator frozen 1 s: latency p99 {totals['latency_ms']['p99']:.0f} ms, "
              f"service p99 {totals['service_ms']['p99']:.1f} ms, "
              f"lag p99 {totals['schedule_lag_ms']['p99']:.0f} ms")
        # The late requests went out late: the lag is in the latency, not in the service time.
        self.assertGreaterEqual(totals["latency_ms"]["p99"], 500, totals)
        self.assertGreaterEqual(totals["schedule_lag_ms"]["p99"], 500, totals)
        self.assertLess(totals["service_ms"]["p99"], 100, totals)
        self.assertTrue(report["saturated"], report["warnings"])
        self.assertTrue(any("saturated" in w for w in report["warnings"]), report["warnings"])
        self.assertIn("saturated", out)

    def test_max_in_flight_drops_arrivals_and_never_queues_them(self):
        with lib.fault_target() as target:
            rc, out, err, context = lib.run_local(self.tmp, f"""
                name: e2e-max-in-flight
                target: {target.url}
                load: {{rate: 100/s, duration: 3s, max_in_flight: 5}}
                flows:
                  - steps: [{{get: /delay/200, name: slow}}]
                """, self.out(), args=["--threads", "1"], timeout=40)
        self.assertEqual(rc, 0, context)
        totals = lib.load_report(self.out())["totals"]
        print(f"\n  max_in_flight 5 vs 200 ms responses at 100/s: {totals['requests']} completed, "
              f"{totals['dropped']} dropped")
        # Five slots of 200 ms each: about 25 completions a second, the rest dropped.
        self.assertLessEqual(abs(totals["requests"] + totals["dropped"] - 300), 3, totals)
        self.assertGreater(totals["dropped"], 150, totals)
        self.assertLessEqual(totals["requests"], 5 * 3 / 0.2 + 5, totals)
        # Nothing waited for a slot: the schedule lag stays small.
        self.assertLess(totals["schedule_lag_ms"]["p99"], 50, totals)

    def test_closed_stages_ramp_up_and_down_and_iterations_end_the_run(self):
        with lib.nginx() as server:
            path = lib.write_scenario(self.tmp, f"""
                name: e2e-stages
                target: {server.url}
                load:
                  stages:
                    - {{to: 6, over: 1s}}
                    - {{hold: 2s}}
                    - {{to: 0, over: 1s}}
                flows:
                  - think: 20ms
                    steps: [{{get: /, name: home}}]
                """, name="stages.yaml")
            rc, out, err = lib.run_master(["--out", self.out("stages"), path], timeout=40)
            stages_context = lib.describe(rc, out, err)
            capped = lib.write_scenario(self.tmp, f"""
                name: e2e-iterations
                target: {server.url}
                load: {{users: 4, duration: 30s, iterations: 50}}
                flows:
                  - steps: [{{get: /, name: home}}, {{get: /, name: again}}]
                """, name="iterations.yaml")
            started = time.monotonic()
            rc2, out2, err2 = lib.run_master(["--out", self.out("iterations"), "--quiet", capped],
                                             timeout=40)
            elapsed = time.monotonic() - started
            capped_context = lib.describe(rc2, out2, err2)
        self.assertEqual(rc, 0, stages_context)
        rows = timeseries(self.out("stages"))
        users = [int(r["users"]) for r in rows]
        self.assertEqual(max(users), 6, rows)
        report = lib.load_report(self.out("stages"))
        self.assertAlmostEqual(report["duration_s"], 4.0, delta=0.5)
        self.assertEqual(report["load"]["stages"][0], {"to": 6, "over_s": 1.0}, report["load"])
        # Ramped down: the last interval ran fewer users than the hold.
        self.assertLess(users[-1], 6, rows)
        self.assertEqual(rc2, 0, capped_context)
        capped_report = lib.load_report(self.out("iterations"))
        self.assertEqual(capped_report["totals"]["requests"], 100, capped_report["totals"])
        self.assertLess(elapsed, 15, "the run should end when the iterations are done")


if __name__ == "__main__":
    unittest.main(verbosity=2)
