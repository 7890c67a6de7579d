"""End to end, halt policies (issue 4): `on_error: {count: N}` counts errors cluster-wide,
`abort: true` thresholds halt the run as soon as they are breached, thresholds without `abort`
are judged at the end (exit 1, outcome `failed`), and `on_error: {rate: X%, window: D}` halts
on the merged error rate only when it is reached.

Every run goes to a fault_target on 127.0.0.1, is bounded by its `duration`, and stops by itself.
"""

import os
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

WORKERS = 3


class HaltPoliciesTest(lib.TempDirTestCase, unittest.TestCase):
    def run_cluster(self, scenario_text, n_workers=WORKERS, timeout=40, name="scenario.yaml"):
        """Start a fault_target and `n_workers` workers, run the master on `scenario_text`
        (with TARGET replaced by the target's URL).

        Returns (rc, elapsed_s, report or None, target_count, context).
        """
        with lib.fault_target() as target, lib.workers(n_workers) as ws:
            text = textwrap.dedent(scenario_text).replace("TARGET", target.url)
            path = lib.write_scenario(self.tmp, text, name=name)
            out_dir = os.path.join(self.tmp, "out-" + name.split(".")[0])
            started = time.monotonic()
            rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--out", out_dir,
                                           "--quiet", path], timeout=timeout)
            elapsed = time.monotonic() - started
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lib.assert_no_crash(self, err, context)
            for i, d in enumerate(ws):
                self.assertTrue(d.alive(), f"worker {i} died\n{context}")
            # Let a straggler (if any) reach the target before counting.
            time.sleep(0.1)
            seen = target.count()
        report = lib.load_report(out_dir) if os.path.exists(
            os.path.join(out_dir, "report.json")) else None
        self.assertIsNotNone(report, f"no report.json\n{context}")
        return rc, elapsed, report, seen, context

    def assert_workers_done(self, report):
        workers = report["workers"]
        self.assertEqual(len(workers), WORKERS, workers)
        for w in workers:
            self.assertEqual(w["state"], "done", w)
        self.assertEqual(sum(w["requests"] for w in workers), report["totals"]["requests"],
                         workers)

    def assert_halted_fast(self, rc, elapsed, report, context, reason):
        """Exit 1 well before the run's 8 s, halted for `reason`."""
        self.assertEqual(rc, 1, context)
        self.assertLess(elapsed, 6, context)
        lib.assert_halted(self, report, 1, reason)

    def assert_ran_to_the_end(self, rc, elapsed, report, context, duration_s, exit_code, outcome):
        """Not halted: the run went its full duration and ended with `exit_code`, `outcome`."""
        self.assertEqual(rc, exit_code, context)
        self.assertEqual(report["exit_code"], exit_code, report)
        self.assertEqual(report["outcome"], outcome, report)
        self.assertIsNone(report["halt"], report)
        self.assertGreaterEqual(elapsed, duration_s - 0.2, context)
        self.assertGreaterEqual(report["duration_s"], duration_s - 0.1, report)

    # ---------------------------------------------------------------------------- {count: N}

    def test_count_halts_on_the_fifth_error_cluster_wide(self):
        count = 5
        users = 6   # 2 per worker
        # Every request fails. A random pause before each request spreads the errors out in
        # time, so the cluster reaches its 5th error long before any worker has 5 of its own.
        rc, elapsed, report, seen, context = self.run_cluster(f"""\
            name: e2e-halt-count
            target: TARGET
            load:
              users: {users}
              duration: 8s
            halt:
              on_error: {{count: {count}}}
            flows:
              - name: failing
                think: 200ms
                steps:
                  - think: 1ms..150ms
                  - get: /status/500
                    name: always-500
            """)
        halt = report["halt"]
        totals = report["totals"]
        print(f"\n  count {count}: halted at {halt and halt.get('at_s')}s with value "
              f"{halt and halt.get('value')}, totals.errors {totals['errors']}, per worker "
              f"{[w['errors'] for w in report['workers']]}")
        self.assert_halted_fast(rc, elapsed, report, context, "error_count")
        # Halted on the 5th error cluster-wide: requests already in flight (at most one per
        # user) may fail too, but it did not go on to 5 errors per worker (15).
        self.assertGreaterEqual(halt["value"], count, halt)
        self.assertLess(halt["value"], count + users, halt)
        self.assertGreaterEqual(totals["errors"], count, totals)
        self.assertLess(totals["errors"], count + users, totals)
        self.assertLess(totals["errors"], count * WORKERS, totals)
        self.assertTrue(any(w["errors"] < count for w in report["workers"]), report["workers"])
        self.assertLess(halt["at_s"], 2.0, halt)
        self.assertLessEqual(totals["requests"], seen, (totals, seen))
        self.assertIsInstance(report["first_error"], dict, report)
        self.assertEqual(report["first_error"]["status"], 500, report["first_error"])
        self.assert_workers_done(report)

    # ------------------------------------------------------------------- abort: true threshold

    def test_abort_threshold_halts_within_two_seconds(self):
        rc, elapsed, report, seen, context = self.run_cluster("""\
            name: e2e-threshold-abort
            target: TARGET
            load:
              users: 6
              duration: 8s
            halt:
              thresholds:
                - {expr: "p99 < 5ms", abort: true}
            flows:
              - name: slow
                steps:
                  - get: /delay/50
                    name: slow
            """)
        halt = report["halt"]
        print(f"\n  abort threshold: halted at {halt and halt.get('at_s')}s, value "
              f"{halt and halt.get('value')}, master took {elapsed:.2f}s")
        self.assert_halted_fast(rc, elapsed, report, context, "threshold")
        self.assertEqual(halt["threshold"], "p99 < 5ms", halt)
        self.assertGreaterEqual(halt["value"], 50, halt)
        self.assertLessEqual(halt["at_s"], 2.5, halt)
        self.assertLess(report["duration_s"], 3.5, report)
        self.assertEqual(report["totals"]["errors"], 0, report["totals"])
        self.assertGreater(report["totals"]["requests"], 0, report["totals"])
        # The breached threshold is listed too.
        thresholds = report["thresholds"]
        self.assertEqual(len(thresholds), 1, thresholds)
        self.assertEqual(thresholds[0]["expr"], "p99 < 5ms", thresholds)
        self.assertTrue(thresholds[0]["abort"], thresholds)
        self.assertFalse(thresholds[0]["passed"], thresholds)
        self.assert_workers_done(report)

    # --------------------------------------------------------- thresholds judged at the end

    THRESHOLD_SCENARIO = """\
        name: {name}
        target: TARGET
        load:
          users: 6
          duration: {duration}
        halt:
          thresholds: {thresholds}
        flows:
          - name: slow
            steps:
              - get: /delay/20
                name: slow
        """

    def test_threshold_without_abort_is_judged_at_the_end(self):
        duration_s = 2
        rc, elapsed, report, seen, context = self.run_cluster(self.THRESHOLD_SCENARIO.format(
            name="e2e-threshold-end", duration=f"{duration_s}s",
            thresholds='["p99 < 5ms", "p99 < 5s"]'), name="failing.yaml")
        thresholds = report["thresholds"]
        print(f"\n  end-judged thresholds: {[(t['expr'], t['value'], t['passed']) for t in thresholds]}")
        self.assert_ran_to_the_end(rc, elapsed, report, context, duration_s, 1, "failed")
        self.assertEqual(len(thresholds), 2, thresholds)
        failing, passing = thresholds
        self.assertEqual(failing["expr"], "p99 < 5ms", failing)
        self.assertFalse(failing["abort"], failing)
        self.assertIs(failing["passed"], False, failing)
        self.assertGreaterEqual(failing["value"], 20, failing)
        self.assertLess(failing["value"], 5000, failing)
        self.assertEqual(passing["expr"], "p99 < 5s", passing)
        self.assertIs(passing["passed"], True, passing)
        self.assertAlmostEqual(passing["value"], failing["value"], delta=0.01 * failing["value"])
        totals = report["totals"]
        self.assertEqual(totals["errors"], 0, totals)
        self.assertEqual(totals["requests"], seen, (totals, seen))
        self.assert_workers_done(report)

        # Only the passing threshold: exit 0.
        rc, elapsed, report, seen, context = self.run_cluster(self.THRESHOLD_SCENARIO.format(
            name="e2e-threshold-pass", duration=f"{duration_s}s", thresholds='["p99 < 5s"]'),
            name="passing.yaml")
        self.assert_ran_to_the_end(rc, elapsed, report, context, duration_s, 0, "passed")
        thresholds = report["thresholds"]
        self.assertEqual(len(thresholds), 1, thresholds)
        self.assertEqual(thresholds[0]["expr"], "p99 < 5s", thresholds)
        self.assertIs(thresholds[0]["passed"], True, thresholds)
        self.assertGreaterEqual(thresholds[0]["value"], 20, thresholds)
        self.assertEqual(report["totals"]["requests"], seen, (report["totals"], seen))
        self.assert_workers_done(report)

    # ------------------------------------------------------------------- {rate: X%, window: D}

    RATE_SCENARIO = """\
        name: e2e-halt-rate
        target: TARGET
        load:
          users: 6
          duration: {duration}
        halt:
          on_error: {{rate: {rate}, window: 5s}}
        flows:
          - name: good
            weight: {good}
            think: 5ms
            steps:
              - get: /ok
                name: ok
          - name: bad
            weight: {bad}
            think: 5ms
            steps:
              - get: /status/500
                name: bad
        """

    def test_error_rate_above_the_limit_halts(self):
        rc, elapsed, report, seen, context = self.run_cluster(self.RATE_SCENARIO.format(
            duration="8s", rate="20%", good=1, bad=1))
        halt = report["halt"]
        print(f"\n  rate 20% with half the requests failing: halted at "
              f"{halt and halt.get('at_s')}s, value {halt and halt.get('value')}")
        self.assert_halted_fast(rc, elapsed, report, context, "error_rate")
        self.assertLessEqual(halt["at_s"], 2.5, halt)
        # The merged rate over the window, as a fraction: about half the requests failed.
        self.assertGreaterEqual(halt["value"], 0.2, halt)
        self.assertLessEqual(halt["value"], 0.8, halt)
        totals = report["totals"]
        self.assertGreater(totals["errors"], 0, totals)
        self.assertGreater(totals["requests"], totals["errors"], totals)
        self.assertLessEqual(totals["requests"], seen, (totals, seen))
        self.assert_workers_done(report)

    def test_error_rate_below_the_limit_does_not_halt(self):
        duration_s = 2
        rc, elapsed, report, seen, context = self.run_cluster(self.RATE_SCENARIO.format(
            duration=f"{duration_s}s", rate="50%", good=99, bad=1))
        totals = report["totals"]
        print(f"\n  rate 50% with ~1% failing: {totals['errors']} errors of "
              f"{totals['requests']} requests")
        self.assert_ran_to_the_end(rc, elapsed, report, context, duration_s, 0, "passed")
        # Some errors happened (about 1 %), and they were tolerated.
        self.assertGreater(totals["requests"], 200, totals)
        self.assertGreater(totals["errors"], 0, totals)
        self.assertLess(totals["errors"], totals["requests"] * 0.1, totals)
        self.assertEqual(totals["requests"], seen, (totals, seen))
        self.assert_workers_done(report)


if __name__ == "__main__":
    unittest.main()
