"""End to end: Ctrl-C (SIGINT) on the master mid-run stops the load gracefully: exit 130 within
3 s, report written with halt.reason "interrupted", and its counts agree with nginx's log.
Ctrl-C during the handshake exits 130 at once, and a second Ctrl-C tells the workers to halt
before the master exits (issue 11, point 13)."""

import os
import signal
import socket
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
                rc, out, err, took = lib.interrupt_master(self, proc, self.tmp, EXIT_WITHIN_S)
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


class HandshakeAndDoubleInterruptTest(lib.TempDirTestCase, unittest.TestCase):
    def test_sigint_during_the_handshake_exits_130_at_once(self):
        # A "worker" that accepts TCP (the kernel does) and never says a word: the master
        # waits in the handshake for --connect-timeout.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as mute:
            mute.bind((lib.LOOPBACK, 0))
            mute.listen(8)
            hosts = os.path.join(self.tmp, "hosts.txt")
            with open(hosts, "w") as f:
                f.write(f"{lib.LOOPBACK}:{mute.getsockname()[1]}\n")
            path = lib.write_scenario(
                self.tmp, lib.one_get_scenario("http://127.0.0.1:9/", 2, "5s", "e2e-handshake"))
            proc = lib.start_master(["--workers", hosts, "--connect-timeout", "20s", "--quiet",
                                     path], self.tmp)
            try:
                time.sleep(0.7)
                rc, out, err, took = lib.interrupt_master(self, proc, self.tmp, 5)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        context = lib.describe(rc, out, err)
        print(f"\n  SIGINT in the handshake: exit {rc} after {took:.2f}s")
        self.assertEqual(rc, 130, context)
        self.assertLess(took, 1.0, context)
        lib.assert_no_crash(self, err, context)

    def test_double_sigint_halts_the_workers_before_exiting(self):
        # The worker's own master-silence timeout is long: only a Halt from the master can
        # stop its load quickly.
        with lib.nginx() as server, lib.workers(1, extra_args=["--heartbeat-timeout", "10s"]) as ws:
            path = lib.write_scenario(
                self.tmp, lib.one_get_scenario(server.url, 4, "30s", "e2e-double-interrupt"))
            proc = lib.start_master(["--workers", ws.hosts_file, "--heartbeat-timeout", "10s",
                                     "--quiet", path], self.tmp)
            try:
                time.sleep(2.0)
                if proc.poll() is not None:
                    self.fail("master ended before it was interrupted:\n" +
                              lib.describe(*lib.finish_master(proc, self.tmp, 1)))
                before = server.access_log_lines()
                # Both land before the control loop can act on the first: the master is
                # stopped while they are sent (SIGINT then SIGTERM: two signals of one kind
                # would merge into one while pending).
                os.kill(proc.pid, signal.SIGSTOP)
                os.kill(proc.pid, signal.SIGINT)
                os.kill(proc.pid, signal.SIGTERM)
                os.kill(proc.pid, signal.SIGCONT)
                signalled = time.monotonic()
                rc, out, err = lib.finish_master(proc, self.tmp, 3)
                exited = time.monotonic() - signalled
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            time.sleep(max(0.0, 0.5 - (time.monotonic() - signalled)))
            at_half_second = server.access_log_lines()
            time.sleep(1.5)
            later = server.access_log_lines()
        print(f"\n  double SIGINT: exit {rc} after {exited:.2f}s; requests at the signal {before}, "
              f"+0.5s {at_half_second}, +2s {later}")
        self.assertEqual(rc, 130, context)
        self.assertLess(exited, 1.5, context)
        self.assertGreater(before, 0, context)
        # The load stopped within half a second of the signals: nothing new after that.
        self.assertEqual(later, at_half_second, context)


if __name__ == "__main__":
    unittest.main()
