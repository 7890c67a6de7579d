"""End to end, global halt (issue 4): the first error on any worker stops the whole cluster fast,
measured against the fault target's own request log; transport errors halt too; `on_error: never`
does not; a slow in-flight request does not delay the halt; Ctrl-C on the master halts with reason
`interrupted` and leaves the workers idle for the next run."""

import os
import re
import signal
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402


class GlobalHaltTest(lib.TempDirTestCase, unittest.TestCase):
    def run_cluster(self, ws, scenario_text, timeout=60, extra=()):
        path = lib.write_scenario(self.tmp, textwrap.dedent(scenario_text))
        out_dir = os.path.join(self.tmp, "out")
        started = time.monotonic()
        rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--out", out_dir, "--quiet",
                                       *extra, path], timeout=timeout)
        elapsed = time.monotonic() - started
        context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        return rc, out, err, elapsed, out_dir, context

    def check_run(self, rc, err, out_dir, context, exit_code, outcome):
        """The master exited with `exit_code` without crashing; its report says `outcome`."""
        self.assertEqual(rc, exit_code, context)
        lib.assert_no_crash(self, err, context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], outcome, report)
        return report

    def test_first_500_halts_four_workers_and_the_target_sees_nothing_after(self):
        fail_after = 2000
        users = 20
        with lib.fault_target() as target, lib.workers(4) as ws:
            rc, out, err, elapsed, out_dir, context = self.run_cluster(ws, lib.one_get_scenario(
                target.url, users, "20s", "e2e-global-halt", path=f"/fail-after/{fail_after}",
                step="fail-after", flow="pool", halt={"on_error": "first"}))
            # Let stragglers (if any) reach the target before reading its log.
            time.sleep(0.3)
            log = target.log_entries()

        report = self.check_run(rc, err, out_dir, context, 1, "halted")
        self.assertLess(elapsed, 10, context)
        self.assertEqual(report["exit_code"], 1, report)
        first = report["first_error"]
        self.assertIsInstance(first, dict, report)
        self.assertEqual(first["status"], 500, first)
        self.assertEqual(first["step"], "fail-after", first)
        halt = report["halt"]
        self.assertIsInstance(halt, dict, report)
        self.assertEqual(halt["reason"], "first_error", halt)
        lib.assert_halt_figures(self, report)
        all_stopped_ms = halt["all_stopped_ms"]
        print(f"\n  4 workers: all_stopped_ms = {all_stopped_ms}, "
              f"halt_sent_ms = {halt.get('halt_sent_ms')}, cancelled = {halt.get('cancelled')}")
        self.assertIsInstance(all_stopped_ms, (int, float), halt)
        self.assertGreaterEqual(all_stopped_ms, 0, halt)
        self.assertLess(all_stopped_ms, 1000, halt)
        workers = report["workers"]
        self.assertEqual(len(workers), 4, workers)
        for w in workers:
            self.assertEqual(w["state"], "done", w)
            self.assertGreater(w["requests"], 0, w)
        self.assertIn(first["worker"], [w["id"] for w in workers], first)

        # The target's own log, on its own monotonic clock: nothing arrived later than the first
        # 500 plus all_stopped_ms plus 50 ms (requests already in flight at the halt).
        failures = [e for e in log if e[4] == 500]
        self.assertTrue(failures, "the target never answered 500")
        first_500_ms = min(e[0] for e in failures)
        limit_ms = first_500_ms + all_stopped_ms + 50
        last_ms = max(e[0] for e in log)
        late = [e for e in log if e[0] > limit_ms]
        print(f"  target: {len(log)} requests, {len(failures)} answered 500; last one "
              f"{last_ms - first_500_ms} ms after the first 500 (limit {limit_ms - first_500_ms:.1f})")
        self.assertEqual(len(late), 0,
                         f"{len(late)} requests reached the target later than first 500 + "
                         f"all_stopped_ms + 50 ms ({limit_ms - first_500_ms:.1f} ms); latest "
                         f"{last_ms - first_500_ms} ms after\n{halt}")
        # At most about one request per user after the failure: in flight or racing the halt.
        # Counted in log order (the target writes one line per answer, in order): its clock has
        # millisecond resolution and many answers share the first 500's millisecond.
        first_500_index = next(i for i, e in enumerate(log) if e[4] == 500)
        self.assertLessEqual(len(log) - first_500_index - 1, users * 2, halt)
        # Every request the workers completed reached the target; cancelled ones may have.
        totals = report["totals"]
        self.assertLessEqual(totals["requests"], len(log), totals)
        self.assertLessEqual(len(log), totals["requests"] + totals["cancelled"], totals)

    def test_connection_refused_halts_with_connect_refused(self):
        dead_port = lib.free_port()
        with lib.fault_target() as target, lib.workers(2) as ws:
            rc, out, err, elapsed, out_dir, context = self.run_cluster(ws, f"""\
                name: e2e-connect-refused
                target: {target.url}
                load:
                  users: 4
                  duration: 10s
                flows:
                  - name: two-steps
                    steps:
                      - get: /ok
                        name: ok
                      - get: http://127.0.0.1:{dead_port}/x
                        name: nobody-listens
                """)

        report = self.check_run(rc, err, out_dir, context, 1, "halted")
        self.assertLess(elapsed, 8, context)
        first = report["first_error"]
        self.assertIsInstance(first, dict, report)
        self.assertEqual(first["error_kind"], "connect_refused", first)
        self.assertEqual(first["step"], "nobody-listens", first)
        self.assertIn(str(dead_port), first["url"], first)
        self.assertEqual(report["halt"]["error_kind"], "connect_refused", report["halt"])
        lib.assert_halt_figures(self, report)

    def test_body_expectation_failure_halts_with_expect_body(self):
        with lib.fault_target() as target, lib.workers(2) as ws:
            rc, out, err, elapsed, out_dir, context = self.run_cluster(ws, f"""\
                name: e2e-expect-body
                target: {target.url}
                load:
                  users: 4
                  duration: 10s
                flows:
                  - name: checked
                    steps:
                      - get: /ok
                        name: ok-body
                        expect: {{status: 200, body_contains: "ok"}}
                      - get: /status/200
                        name: wrong-body
                        expect: {{status: 200, body_contains: "pool ready"}}
                """)

        report = self.check_run(rc, err, out_dir, context, 1, "halted")
        self.assertLess(elapsed, 8, context)
        first = report["first_error"]
        self.assertEqual(first["error_kind"], "expect_body", first)
        self.assertEqual(first["step"], "wrong-body", first)
        self.assertEqual(first["status"], 200, first)
        self.assertIn("pool ready", first["detail"], first)
        steps = {s["name"]: s for s in report["steps"]}
        self.assertEqual(steps["ok-body"]["errors"], 0, steps)
        lib.assert_halt_figures(self, report)

    def test_on_error_never_counts_every_error_and_runs_to_the_end(self):
        with lib.fault_target() as target, lib.workers(2) as ws:
            rc, out, err, elapsed, out_dir, context = self.run_cluster(ws, lib.one_get_scenario(
                target.url, 4, "3s", "e2e-never", path="/status/500", step="always-500",
                flow="broken", halt={"on_error": "never"}))
            seen = target.count()

        report = self.check_run(rc, err, out_dir, context, 0, "passed")
        self.assertGreaterEqual(elapsed, 2.5, context)
        self.assertIsNone(report["halt"], report)
        totals = report["totals"]
        self.assertGreater(totals["requests"], 0, totals)
        self.assertEqual(totals["errors"], totals["requests"], totals)
        self.assertGreaterEqual(report["duration_s"], 2.5, report)
        self.assertLessEqual(totals["requests"], seen, totals)
        for w in report["workers"]:
            self.assertEqual(w["state"], "done", w)
            self.assertGreater(w["errors"], 0, w)
            self.assertEqual(w["errors"], w["requests"], w)

    def test_slow_in_flight_request_does_not_delay_the_halt(self):
        # Every user picks a flow per iteration: about half start a 10 s request and stay in
        # it; the others loop on /fail-after/200 and reach the failure within milliseconds.
        # With 20 users, the chance that all of them pick the same flow is 2 in a million.
        users = 20
        with lib.fault_target() as target, lib.workers(2) as ws:
            rc, out, err, elapsed, out_dir, context = self.run_cluster(ws, f"""\
                name: e2e-slow-in-flight
                target: {target.url}
                load:
                  users: {users}
                  duration: 20s
                http:
                  timeout: 30s
                flows:
                  - name: slow
                    weight: 1
                    steps:
                      - get: /delay/10000
                        name: slow
                  - name: failing
                    weight: 1
                    steps:
                      - loop: 300
                        steps:
                          - get: /fail-after/200
                            name: fail-after
                """, timeout=30)

        print(f"\n  slow in-flight: master took {elapsed:.2f}s")
        self.assertEqual(rc, 1, context)
        lib.assert_no_crash(self, err, context)
        self.assertLess(elapsed, 3.0, f"the halt waited for the slow request\n{context}")
        report = lib.load_report(out_dir)
        halt = report["halt"]
        self.assertIsInstance(halt, dict, report)
        self.assertEqual(halt["reason"], "first_error", halt)
        self.assertEqual(report["first_error"]["step"], "fail-after", report["first_error"])
        lib.assert_halt_figures(self, report)
        print(f"  all_stopped_ms = {halt['all_stopped_ms']}, cancelled = {halt['cancelled']}")
        self.assertIsInstance(halt["all_stopped_ms"], (int, float), halt)
        self.assertLess(halt["all_stopped_ms"], 100, halt)
        # The slow requests were in flight and were cancelled, not counted as errors.
        self.assertGreater(report["totals"]["cancelled"], 0, report["totals"])
        steps = {s["name"]: s for s in report["steps"]}
        self.assertEqual(steps["slow"]["errors"], 0, steps["slow"])

    def test_sigint_on_the_master_halts_and_leaves_workers_idle(self):
        with lib.fault_target() as target, lib.workers(2) as ws:
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                target.url, 6, "30s", "e2e-cluster-interrupt", path="/ok", step="ok"))
            out_dir = os.path.join(self.tmp, "out")
            # Not --quiet: wait for the first live line, so that the run has surely started.
            proc = lib.start_master(["--workers", ws.hosts_file, "--out", out_dir, path],
                                    self.tmp)
            stdout_path = os.path.join(self.tmp, "master.stdout")
            try:
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline and proc.poll() is None:
                    with open(stdout_path) as f:
                        if any(re.match(r"\s*\d+(\.\d+)?s /", line) for line in f):
                            break
                    time.sleep(0.02)
                time.sleep(0.5)
                rc, out, err, took = lib.interrupt_master(self, proc, self.tmp, 5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()

            # The same workers take the next run at once.
            again = os.path.join(self.tmp, "again")
            os.makedirs(again)
            path2 = lib.write_scenario(again, lib.one_get_scenario(
                target.url, 2, "1s", "e2e-after-interrupt", path="/ok", step="ok"))
            rc2, out2, err2 = lib.run_master(["--workers", ws.hosts_file, "--out",
                                              os.path.join(again, "out"), "--quiet", path2],
                                             timeout=30)
            context2 = lib.describe(rc2, out2, err2) + "\n" + ws.stderr()

        print(f"\n  SIGINT: master exited {took:.2f}s after the signal")
        with self.subTest("interrupted run"):
            self.assertIsNotNone(rc, f"master still running 5 s after SIGINT\n{context}")
            self.assertEqual(rc, 130, context)
            lib.assert_no_crash(self, err, context)
            self.assertLess(took, 3.0, context)
            report = lib.load_report(out_dir)
            self.assertEqual(report["exit_code"], 130, report)
            self.assertIsInstance(report["halt"], dict, report)
            self.assertEqual(report["halt"]["reason"], "interrupted", report["halt"])
            lib.assert_halt_figures(self, report)
            self.assertGreater(report["totals"]["requests"], 0, report["totals"])
            self.assertEqual(report["totals"]["errors"], 0, report["totals"])
            for w in report["workers"]:
                self.assertEqual(w["state"], "done", w)
                self.assertGreater(w["requests"], 0, w)
        with self.subTest("workers idle again"):
            self.assertEqual(rc2, 0, context2)
            self.assertNotIn("busy", err2.lower(), context2)
            report2 = lib.load_report(os.path.join(again, "out"))
            self.assertEqual(report2["outcome"], "passed", report2)
            self.assertEqual([w["state"] for w in report2["workers"]], ["done", "done"],
                             report2["workers"])


if __name__ == "__main__":
    unittest.main()
