"""End to end (issue 14): per-worker divergence. Two workers share an open-model run; one is
frozen with SIGSTOP for 2 s (shorter than the heartbeat timeout: late, not lost), so its
arrivals of those 2 s go out late. It, and only it, is flagged: in the live line, in
report.json's workers[].divergent with the reason (schedule lag p99 against the rest's), in the
end-of-run summary (its address and the same reason), and in report.html's workers table. A run where both workers are left alone flags neither."""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import headless_chromium  # noqa: E402
import stampede_testlib as lib  # noqa: E402

TIMEOUTS = ["--heartbeat-timeout", "8s"]
FREEZE_S = 2.0
DURATION_S = 7


def scenario(url):
    return (f"name: e2e-divergence\ntarget: {url}\n"
            f"load: {{rate: 300/s, duration: {DURATION_S}s, max_in_flight: 2000}}\n"
            "halt: {on_error: never}\n"
            "flows:\n  - name: f\n    steps:\n      - {get: /ok, name: ok}\n")


class DivergenceTest(lib.TempDirTestCase, unittest.TestCase):
    def run_pair(self, freeze):
        out_dir = os.path.join(self.tmp, "out")
        with lib.fault_target() as target, lib.workers(2, extra_args=TIMEOUTS) as ws:
            path = lib.write_scenario(self.tmp, scenario(target.url))

            def act():
                if freeze:
                    ws[1].kill(signal.SIGSTOP)
                    time.sleep(FREEZE_S)
                    ws[1].kill(signal.SIGCONT)

            rc, out, err, _, _ = lib.run_master_and_act(
                ["--workers", ws.hosts_file, *TIMEOUTS, "--out", out_dir, path], self.tmp, 2.5,
                act, DURATION_S + 20, "the freeze")
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        return report, out, os.path.join(out_dir, "report.html"), context

    def test_a_frozen_worker_is_flagged_divergent_and_the_other_is_not(self):
        report, out, html, context = self.run_pair(freeze=True)
        workers = sorted(report["workers"], key=lambda w: w["id"])
        context += "\n" + "\n".join(str(w) for w in workers)
        self.assertEqual([w["state"] for w in workers], ["done", "done"], context)
        frozen, healthy = workers[1], workers[0]
        self.assertIsNone(healthy["divergent"], context)
        self.assertIsInstance(frozen["divergent"], str, context)
        self.assertIn("schedule lag p99", frozen["divergent"], context)
        # Its own lag p99 is about the freeze; the healthy one's is far below.
        self.assertGreater(frozen["schedule_lag_p99_ms"], 1000 * FREEZE_S * 0.5, context)
        self.assertLess(healthy["schedule_lag_p99_ms"], 0.5 * frozen["schedule_lag_p99_ms"],
                        context)
        # The live line says so once the worker is back.
        flagged = [line for line in out.splitlines() if "DIVERGENT worker 1: " in line]
        self.assertTrue(flagged, context)
        self.assertIn("schedule lag p99", flagged[-1], context)
        self.assertNotIn("DIVERGENT worker 0", out, context)
        # The end-of-run summary names it too, with its address and report.json's reason, and
        # names no other worker.
        summary = out[out.rindex("\nstep "):]
        named = [line for line in summary.splitlines() if line.startswith("DIVERGENT worker")]
        self.assertEqual(named, [f"DIVERGENT worker 1 ({frozen['address']}): "
                                 f"{frozen['divergent']}"], context)
        # The page shows the same verdict: the worker's row marked, its reason in it.
        if headless_chromium.find_chromium():
            with headless_chromium.Chromium() as browser:
                browser.load("file://" + html)
                row = browser.evaluate(
                    "(() => { const r = document.getElementById('worker-1');"
                    " return [r.className, r.querySelector('.divergent-reason').textContent,"
                    " document.querySelectorAll('tr.divergent').length,"
                    " document.getElementById('divergent-workers').textContent]; })()")
                self.assertEqual(browser.console_errors(), [], context)
            self.assertEqual(row[:3], ["divergent", frozen["divergent"], 1], context)
            self.assertIn("Worker 1 (", row[3], context)

    def test_two_healthy_workers_are_not_divergent(self):
        report, out, html, context = self.run_pair(freeze=False)
        context += "\n" + "\n".join(str(w) for w in report["workers"])
        for w in report["workers"]:
            self.assertIsNone(w["divergent"], context)
            self.assertIsInstance(w["p99_ms"], (int, float), context)
            self.assertIsInstance(w["schedule_lag_p99_ms"], (int, float), context)
            self.assertEqual(w["error_rate"], 0, context)
        self.assertNotIn("DIVERGENT", out, context)


if __name__ == "__main__":
    unittest.main()
