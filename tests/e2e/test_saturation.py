"""A saturated load thread must not delay the end of the run or the halt.

DESIGN.md: in-context timers fire late under saturation, so the control thread delivers the
end of the run and the halt. Here one load thread drives 3,000 virtual users against nginx.
"""

import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

USERS = 3000


def scenario(port, duration):
    return f"""
name: saturation
target: http://127.0.0.1:{port}
load: {{users: {USERS}, ramp: 500ms, duration: {duration}}}
http: {{timeout: 10s}}
flows:
  - name: hammer
    steps:
      - get: /
        name: home
"""


class SaturatedThreadTest(lib.TempDirTestCase, unittest.TestCase):
    def test_end_of_run_arrives_on_time(self):
        with lib.nginx() as nginx:
            path = lib.write_scenario(self.tmp, scenario(nginx.port, "3s"))
            out = os.path.join(self.tmp, "out")
            started = time.monotonic()
            rc, stdout, stderr = lib.run_master(
                ["--threads", "1", "--quiet", "--out", out, path], timeout=60)
            wall = time.monotonic() - started
            context = lib.describe(rc, stdout, stderr)
            self.assertEqual(rc, 0, context)
            report = lib.load_report(out)
            # 0.5 s ramp + 3 s hold; the in-flight requests at the end finish quickly.
            self.assertLessEqual(report["duration_s"], 4.5, context)
            self.assertLess(wall, 8.0, context)
            self.assertGreater(report["totals"]["requests"], USERS, context)
            self.assertEqual(report["totals"]["errors"], 0, context)

    def test_halt_arrives_on_time(self):
        with lib.nginx() as nginx:
            path = lib.write_scenario(self.tmp, scenario(nginx.port, "30s"))
            out = os.path.join(self.tmp, "out")
            proc = lib.start_master(["--threads", "1", "--quiet", "--out", out, path], self.tmp)
            time.sleep(2.5)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGINT)
            rc, stdout, stderr = lib.finish_master(proc, self.tmp, timeout=30)
            took = time.monotonic() - signalled
            context = lib.describe(rc, stdout, stderr)
            self.assertEqual(rc, 130, context)
            self.assertLess(took, 2.0, context)
            report = lib.load_report(out)
            self.assertEqual(report["halt"]["reason"], "interrupted", context)
            lib.assert_halt_figures(self, report)
            self.assertIsNotNone(report["halt"]["all_stopped_ms"], context)
            self.assertLess(report["halt"]["all_stopped_ms"], 1000, context)


if __name__ == "__main__":
    unittest.main()
