"""End to end: Ctrl-C (SIGINT) on the master mid-run stops the load gracefully: exit 130 within
3 s, report written with halt.reason "interrupted", and its counts agree with nginx's log."""

import os
import signal
import sys
import textwrap
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

SIGNAL_AFTER_S = 2.0
EXIT_WITHIN_S = 3.0


class InterruptTest(lib.TempDirTestCase, unittest.TestCase):
    def test_sigint_stops_the_run_and_writes_the_report(self):
        with lib.nginx() as server:
            path = lib.write_scenario(self.tmp, textwrap.dedent(f"""\
                name: e2e-interrupt
                target: {server.url}
                load:
                  users: 10
                  duration: 30s
                flows:
                  - name: browse
                    weight: 2
                    steps:
                      - get: /
                        name: home
                      - get: /products.json
                        name: products
                  - name: about
                    weight: 1
                    steps:
                      - get: /about.html
                        name: about
                """))
            out_dir = os.path.join(self.tmp, "out")
            proc = lib.start_master(["--out", out_dir, path], self.tmp)
            try:
                time.sleep(SIGNAL_AFTER_S)
                if proc.poll() is not None:
                    self.fail("master ended before it was interrupted:\n" +
                              lib.describe(*lib.finish_master(proc, self.tmp, 1)))
                signalled = time.monotonic()
                proc.send_signal(signal.SIGINT)
                rc, out, err = lib.finish_master(proc, self.tmp, EXIT_WITHIN_S)
                took = time.monotonic() - signalled
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            context = lib.describe(rc, out, err)
            lines = lib.wait_access_log_stable(server.access_log)

        self.assertIsNotNone(rc, f"master still running {EXIT_WITHIN_S}s after SIGINT\n{context}")
        self.assertEqual(rc, 130, context)
        self.assertLess(took, EXIT_WITHIN_S, context)
        for marker in lib.CRASH_MARKERS:
            self.assertNotIn(marker, err, context)

        report = lib.load_report(out_dir)
        totals = report["totals"]
        self.assertIn(report["outcome"], ("halted", "interrupted"), report)
        self.assertEqual(report["exit_code"], 130, report)
        self.assertIsInstance(report["halt"], dict, report)
        self.assertEqual(report["halt"]["reason"], "interrupted", report["halt"])
        self.assertLess(report["duration_s"], SIGNAL_AFTER_S + EXIT_WITHIN_S + 1, report)
        self.assertGreater(totals["requests"], 0, totals)
        self.assertEqual(totals["errors"], 0, totals)
        self.assertEqual(sum(s["requests"] for s in report["steps"]), totals["requests"])
        # Cancelled in-flight requests may or may not have been answered and logged by nginx.
        self.assertGreaterEqual(lines, totals["requests"], f"access log {lines}, {totals}")
        self.assertLessEqual(lines, totals["requests"] + totals["cancelled"],
                             f"access log {lines}, {totals}")


if __name__ == "__main__":
    unittest.main()
