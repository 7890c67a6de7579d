"""End to end: halt on the first error against our fault-injecting target, and `on_error: never`
counting errors without halting."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

USERS = 10
FAIL_AFTER = 300


class HaltTest(lib.TempDirTestCase, unittest.TestCase):
    def test_first_error_halts_the_run_within_one_request_per_user(self):
        with lib.fault_target() as target:
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                target.url, USERS, "20s", "e2e-halt", path=f"/fail-after/{FAIL_AFTER}",
                step="fail-after", flow="pool", halt={"on_error": "first"}))
            out_dir = os.path.join(self.tmp, "out")
            started = time.monotonic()
            rc, out, err = lib.run_master(["--out", out_dir, path], timeout=60)
            elapsed = time.monotonic() - started
            context = lib.describe(rc, out, err)
            seen = target.count()
            log = target.log_entries()

        self.assertEqual(rc, 1, context)
        for marker in lib.CRASH_MARKERS:
            self.assertNotIn(marker, err, context)
        # The halt ended the run long before its 20 s.
        self.assertLess(elapsed, 15, context)

        # The target reached the failure, and the halt stopped every user within about one
        # request each (one in flight plus one racing the halt).
        self.assertGreater(seen, FAIL_AFTER, f"target saw {seen}\n{context}")
        self.assertLess(seen, FAIL_AFTER + USERS * 2, f"target saw {seen}\n{context}")
        self.assertEqual(len(log), seen)
        failures = [entry for entry in log if entry[4] == 500]
        self.assertGreaterEqual(len(failures), 1)
        self.assertLessEqual(len(failures), USERS * 2)

        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], "halted", report)
        self.assertEqual(report["exit_code"], 1)
        self.assertLess(report["duration_s"], 15)

        halt = report["halt"]
        self.assertIsInstance(halt, dict, report)
        self.assertTrue(halt.get("reason"), halt)
        self.assertEqual(halt.get("step"), "fail-after", halt)
        self.assertEqual(halt.get("error_kind"), "http_500", halt)
        self.assertGreaterEqual(halt.get("at_s"), 0, halt)

        first = report["first_error"]
        self.assertIsInstance(first, dict, report)
        self.assertEqual(first["status"], 500, first)
        self.assertEqual(first["error_kind"], "http_500", first)
        self.assertEqual(first["step"], "fail-after", first)
        self.assertEqual(first["flow"], "pool", first)
        self.assertEqual(first["method"].upper(), "GET", first)
        self.assertTrue(first["url"].endswith(f"/fail-after/{FAIL_AFTER}"), first)
        self.assertIn("pool exhausted", first["body"], first)
        self.assertIn('"request":', first["body"], first)
        headers = lib.headers_as_dict(first["headers"])
        self.assertIn("application/json", headers.get("content-type", ""), first)
        self.assertGreaterEqual(first["at_s"], 0, first)
        # The first error is printed, with the target's own words, before the summary.
        self.assertIn("pool exhausted", out + err, context)

        totals = report["totals"]
        self.assertGreaterEqual(totals["errors"], 1, totals)
        # Every answered request was counted by the target; cancelled ones may have reached it
        # (even answered 200 after the halt, by up to one per other user).
        self.assertGreater(totals["requests"], FAIL_AFTER - USERS, totals)
        self.assertLessEqual(totals["requests"], seen, totals)
        self.assertLessEqual(seen, totals["requests"] + totals["cancelled"], totals)
        steps = {s["name"]: s for s in report["steps"]}
        self.assertEqual(steps["fail-after"]["errors"], totals["errors"], steps)
        self.assertEqual(steps["fail-after"]["errors_by_kind"].get("http_500"), totals["errors"],
                         steps)

    def test_on_error_never_counts_errors_and_runs_to_the_end(self):
        with lib.fault_target() as target:
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                target.url, 4, "2s", "e2e-never", path="/status/500", step="always-500",
                flow="broken", halt={"on_error": "never"}))
            out_dir = os.path.join(self.tmp, "out")
            started = time.monotonic()
            rc, out, err = lib.run_master(["--out", out_dir, path], timeout=60)
            elapsed = time.monotonic() - started
            context = lib.describe(rc, out, err)
            seen = target.count()

        # Errors without a halt and without thresholds: the run passes (exit 0), errors counted.
        self.assertEqual(rc, 0, context)
        for marker in lib.CRASH_MARKERS:
            self.assertNotIn(marker, err, context)
        self.assertGreaterEqual(elapsed, 1.5, context)

        report = lib.load_report(out_dir)
        totals = report["totals"]
        self.assertEqual(report["outcome"], "passed", report)
        self.assertEqual(report["exit_code"], 0)
        self.assertIsNone(report.get("halt"), report)
        self.assertGreater(totals["requests"], 0, totals)
        self.assertEqual(totals["errors"], totals["requests"], totals)
        self.assertGreaterEqual(report["duration_s"], 1.5)
        self.assertLessEqual(totals["requests"], seen, totals)
        self.assertLessEqual(seen, totals["requests"] + totals["cancelled"], totals)

        steps = {s["name"]: s for s in report["steps"]}
        step = steps["always-500"]
        self.assertEqual(step["requests"], totals["requests"], step)
        self.assertEqual(step["errors"], totals["errors"], step)
        self.assertEqual(step["errors_by_kind"].get("http_500"), step["errors"], step)


if __name__ == "__main__":
    unittest.main()
