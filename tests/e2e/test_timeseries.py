"""End to end (issue 11, points 8 and 12): timeseries.csv rows hold the requests made in their
own second, whenever the Stats arrive (a worker frozen with SIGSTOP sends its late), and the
last short row divides by its real length; a file that cannot be written is a warning at once,
and the last line and the exit code agree; a run that never starts leaves --out alone."""

import csv
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

FREEZE_S = 2.0


def read_rows(out_dir):
    with open(os.path.join(out_dir, "timeseries.csv")) as f:
        return list(csv.DictReader(f))


class TimeseriesRowsTest(lib.TempDirTestCase, unittest.TestCase):
    def test_a_frozen_worker_does_not_make_a_spike_and_the_last_row_is_sane(self):
        # The freeze is shorter than every heartbeat timeout: the worker is late, not lost.
        # Each request waits 5 ms at the target, so the rate is set by the users, not by how
        # busy the machine is.
        timeouts = ["--heartbeat-timeout", "6s"]
        duration_s = 7.5
        with lib.fault_target() as target, lib.workers(2, extra_args=timeouts) as ws:
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                target.url, 8, f"{duration_s}s", "e2e-timeseries-freeze", path="/delay/5"))
            out_dir = os.path.join(self.tmp, "out")

            def freeze():
                ws[1].kill(signal.SIGSTOP)
                time.sleep(FREEZE_S)
                ws[1].kill(signal.SIGCONT)

            rc, out, err, _, _ = lib.run_master_and_act(
                ["--workers", ws.hosts_file, *timeouts, "--out", out_dir, "--quiet", path],
                self.tmp, 2.3, freeze, duration_s + 15, "the freeze")
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            served = target.count()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        rows = read_rows(out_dir)
        table = "\n".join(f"{r['elapsed_s']:>8} {r['requests']:>8} {r['rps']:>10} {r.get('late')}"
                          for r in rows)
        print(f"\n  timeseries with worker 1 frozen {FREEZE_S}s:\n{table}")
        context += "\n" + table
        # Every request is in exactly one row.
        self.assertEqual(sum(int(r["requests"]) for r in rows), report["totals"]["requests"],
                         context)
        # The target served them (and perhaps a few cancelled at the end).
        self.assertLessEqual(report["totals"]["requests"], served, context)
        self.assertLessEqual(served, report["totals"]["requests"] + 8, context)
        # No row stands out: each stays under 1.5 times the fastest of the whole seconds
        # (not the first, not the short last) other than itself. Rates wander on a loaded
        # machine, but a second's requests counted twice, or a short row's divided by too
        # short a time, are twice the rate or more.
        self.assertGreaterEqual(len(rows), 7, context)
        for i, r in enumerate(rows):
            others = [float(o["rps"]) for k, o in enumerate(rows[1:-1], 1) if k != i]
            self.assertLessEqual(float(r["rps"]), 1.5 * max(others),
                                 f"row {r['elapsed_s']} against {max(others):.0f}/s\n{context}")
        last = rows[-1]
        self.assertAlmostEqual(float(last["elapsed_s"]), duration_s, delta=0.2, msg=context)
        self.assertGreater(float(last["rps"]), 0.3 * statistics.median(others), context)
        self.assertTrue(all(r.get("late") == "0" for r in rows), context)


def final_line(out):
    lines = [line for line in out.splitlines() if line.startswith("outcome:")]
    return lines[-1] if lines else ""


class OutputFailureTest(lib.TempDirTestCase, unittest.TestCase):
    def run_with_out(self, out_dir, duration="2s", watch_warning=False):
        """A short local run against nginx with --out: (rc, out, err, seconds from the start to
        the first warning line while the master still ran, or None)."""
        with lib.nginx() as server:
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                server.url, 2, duration, "e2e-outputs"))
            proc = lib.start_master(["--out", out_dir, "--quiet", path], self.tmp)
            started = time.monotonic()
            warned_after = None
            try:
                while watch_warning and proc.poll() is None and time.monotonic() - started < 10:
                    with open(os.path.join(self.tmp, "master.stderr")) as f:
                        if "warning:" in f.read():
                            warned_after = time.monotonic() - started
                            break
                    time.sleep(0.05)
                rc, out, err = lib.finish_master(proc, self.tmp, 20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return rc, out, err, warned_after

    def test_timeseries_write_failure_is_a_warning_at_once_and_the_exit_says_so(self):
        out_dir = os.path.join(self.tmp, "out")
        os.makedirs(out_dir)
        os.symlink("/dev/full", os.path.join(out_dir, "timeseries.csv"))
        rc, out, err, warned_after = self.run_with_out(out_dir, "3s", watch_warning=True)
        context = lib.describe(rc, out, err)
        print(f"\n  timeseries.csv on /dev/full: exit {rc}, warned {warned_after}s in; "
              f"{final_line(out)!r}")
        lib.assert_no_crash(self, err, context)
        self.assertIsNotNone(warned_after, "no warning while the run went on\n" + context)
        self.assertRegex(err, r"warning: .*timeseries\.csv: cannot write: No space left", context)
        self.assertEqual(rc, 3, context)
        self.assertIn(f"(exit {rc})", final_line(out), context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["exit_code"], rc, report)
        self.assertTrue(any("timeseries.csv" in w for w in report["warnings"]), report)

    def test_report_write_failure_tells_the_truth_and_leaves_no_temporary(self):
        out_dir = os.path.join(self.tmp, "out")
        os.makedirs(out_dir)
        os.symlink("/dev/full", os.path.join(out_dir, "report.json.tmp"))
        rc, out, err, _ = self.run_with_out(out_dir)
        context = lib.describe(rc, out, err)
        print(f"\n  report.json.tmp on /dev/full: exit {rc}; {final_line(out)!r}")
        lib.assert_no_crash(self, err, context)
        self.assertEqual(rc, 3, context)
        self.assertIn("(exit 3)", final_line(out), context)
        self.assertRegex(err, r"report\.json: cannot write", context)
        self.assertNotIn("report:", out, context)
        self.assertEqual(sorted(os.listdir(out_dir)), ["timeseries.csv"], context)

    def test_a_full_disk_is_warned_about_and_the_exit_says_so(self):
        out_dir = tempfile.mkdtemp(prefix="stampede-tmpfs-", dir=self.tmp)
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", out_dir],
                                 capture_output=True, text=True)
        if mounted.returncode != 0:
            self.skipTest(f"cannot mount a small tmpfs (needs root): {mounted.stderr.strip()}")
        try:
            # Fill it to the last block.
            with open(os.path.join(out_dir, "filler"), "wb", buffering=0) as f:
                try:
                    while f.write(b"x" * 4096):
                        pass
                except OSError:
                    pass
            rc, out, err, _ = self.run_with_out(out_dir)
            left = sorted(os.listdir(out_dir))
        finally:
            subprocess.run(["umount", out_dir], capture_output=True)
        context = lib.describe(rc, out, err) + f"\nleft: {left}"
        print(f"\n  full tmpfs: exit {rc}; {final_line(out)!r}; left {left}")
        lib.assert_no_crash(self, err, context)
        self.assertEqual(rc, 3, context)
        self.assertIn("(exit 3)", final_line(out), context)
        self.assertRegex(err, r"timeseries\.csv: cannot write: No space left", context)
        self.assertRegex(err, r"report\.json: cannot write: No space left", context)
        self.assertNotIn("report.json.tmp", left, context)

    def test_a_run_that_never_starts_leaves_the_previous_outputs_alone(self):
        out_dir = os.path.join(self.tmp, "out")
        os.makedirs(out_dir)
        previous = {"timeseries.csv": "elapsed_s,users\n1.000,4\n", "report.json": "{}\n"}
        for name, text in previous.items():
            with open(os.path.join(out_dir, name), "w") as f:
                f.write(text)
        hosts = os.path.join(self.tmp, "hosts.txt")
        with open(hosts, "w") as f:
            f.write(f"{lib.LOOPBACK}:{lib.free_port()}\n")
        path = lib.write_scenario(self.tmp, lib.one_get_scenario(
            "http://127.0.0.1:9/", 2, "2s", "e2e-never-starts"))
        rc, out, err = lib.run_master(["--workers", hosts, "--connect-timeout", "500ms",
                                       "--out", out_dir, "--quiet", path], timeout=20)
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 3, context)
        for name, text in previous.items():
            with open(os.path.join(out_dir, name)) as f:
                self.assertEqual(f.read(), text, f"{name} changed\n{context}")
        self.assertEqual(sorted(os.listdir(out_dir)), sorted(previous), context)


if __name__ == "__main__":
    unittest.main()
