"""End to end, the worker daemon's life around a run (issue 11, points 7, 9, 10, 11 and 13):

* a worker stopped with SIGTERM mid-run sends its last figures and is `left`, not lost, and the
  report matches nginx's access log exactly;
* once welcomed, the master's --heartbeat-timeout applies on both sides: a worker frozen longer
  than its own --heartbeat-timeout but shorter than the master's rides it out;
* a frozen worker whose master halted the run and left sends nothing when it resumes;
* a Prepare over the control channel's 64 MiB limit is refused at once, --dry-run included;
* idle connections to a worker's control port are closed after the handshake interval, and a
  worker out of file descriptors reports `generator_fd_exhausted`, not a target error.
"""

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402


def scenario(url, users, duration, name="e2e-worker-lifecycle", halt=None, http=None):
    text = lib.one_get_scenario(url, users, duration, name, path="/", step="main", halt=halt)
    if http:
        text += "http:\n" + "".join(f"  {k}: {v}\n" for k, v in http.items())
    return text


class WorkerLeavesTest(lib.TempDirTestCase, unittest.TestCase):
    def test_sigterm_mid_run_sends_the_last_figures_and_the_worker_is_left(self):
        duration_s = 5
        with lib.nginx() as server, lib.workers(2) as ws:
            path = lib.write_scenario(self.tmp, scenario(server.url, 6, f"{duration_s}s"))
            out_dir = os.path.join(self.tmp, "out")
            started = time.monotonic()
            rc, out, err, _, ended = lib.run_master_and_act(
                ["--workers", ws.hosts_file, "--out", out_dir, "--quiet", path], self.tmp,
                1.5, lambda: ws[1].kill(signal.SIGTERM), duration_s + 15, "the SIGTERM")
            try:
                worker_rc = ws[1].proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker_rc = None
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            leaver_log = ws[1].stderr()
            lines = lib.wait_access_log_stable(server.access_log)
        print(f"\n  worker SIGTERMed at 1.5s: master exit {rc} after {ended - started:.1f}s, "
              f"worker exit {worker_rc}, nginx {lines} requests")
        self.assertEqual(worker_rc, 0, context)
        self.assertIn("left the run; the master has the last figures", leaver_log, context)
        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        self.assertGreaterEqual(ended - started, duration_s - 0.5, context)
        report = lib.load_report(out_dir)
        workers = {w["address"]: w for w in report["workers"]}
        left = workers[ws[1].address]
        self.assertEqual(left["state"], "left", report["workers"])
        self.assertGreater(left["requests"], 0, left)
        self.assertEqual(workers[ws[0].address]["state"], "done", report["workers"])
        self.assertEqual(report["outcome"], "passed", report)
        self.assertIsNone(report["halt"], report)
        # Exact: the leaving worker's last figures were flushed before it exited.
        self.assertEqual(report["totals"]["requests"], lines, report["totals"])
        self.assertTrue(any(ws[1].address in w and "left" in w for w in report["warnings"]),
                        report["warnings"])


class HeartbeatRuleTest(lib.TempDirTestCase, unittest.TestCase):
    def test_a_freeze_shorter_than_the_masters_timeout_is_ridden_out(self):
        # Worker's own timeout 1 s, master's 6 s: frozen 2.5 s, the worker must keep its run.
        duration_s = 6
        with lib.nginx() as server, \
                lib.workers(1, extra_args=["--heartbeat-timeout", "1s"]) as ws:
            path = lib.write_scenario(self.tmp, scenario(server.url, 4, f"{duration_s}s"))
            out_dir = os.path.join(self.tmp, "out")

            def freeze():
                ws[0].kill(signal.SIGSTOP)
                time.sleep(2.5)
                ws[0].kill(signal.SIGCONT)

            rc, out, err, _, _ = lib.run_master_and_act(
                ["--workers", ws.hosts_file, "--heartbeat-timeout", "6s", "--out", out_dir,
                 "--quiet", path], self.tmp, 1.5, freeze, duration_s + 20, "the freeze")
            worker_log = ws[0].stderr()
            context = lib.describe(rc, out, err) + "\n" + worker_log
            lines = lib.wait_access_log_stable(server.access_log)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["workers"][0]["state"], "done", report["workers"])
        self.assertIn("run ", worker_log, context)  # the log was read
        self.assertNotIn("master silent", worker_log, context)
        self.assertEqual(report["totals"]["requests"], lines, report["totals"])


class MasterDisconnectTest(lib.TempDirTestCase, unittest.TestCase):
    def test_a_dialling_worker_stops_at_once_when_its_masters_connection_closes(self):
        # Both timeouts 10 s: only the TCP disconnect can stop the load sooner.
        with lib.nginx() as server:
            endpoint = f"tcp://{lib.LOOPBACK}:{lib.free_port()}"
            path = lib.write_scenario(self.tmp, scenario(server.url, 4, "30s"))
            with lib.dialling_workers(1, endpoint, extra_args=["--heartbeat-timeout", "10s"]) as ws:
                proc = lib.start_master(["--listen", endpoint, "--expect-workers", 1,
                                         "--heartbeat-timeout", "10s", "--quiet", path],
                                        self.tmp)
                try:
                    time.sleep(2.0)
                    self.assertIsNone(proc.poll(), "master ended before the kill")
                    killed_at = time.time()
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=10)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                time.sleep(2.0)
                lib.wait_access_log_stable(server.access_log)
                entries = lib.parse_access_log(server.access_log)
                context = ws.stderr()
                self.assertTrue(ws[0].alive(), context)
        before = [e for e in entries if e.time <= killed_at]
        last = max(e.time for e in entries) - killed_at
        print(f"\n  dialling worker, master SIGKILLed: last request {last:.2f}s after the kill")
        self.assertGreater(len(before), 0, context)
        self.assertLess(last, 1.0, context)
        self.assertIn("master disconnected", context)


class FrozenWorkerTest(lib.TempDirTestCase, unittest.TestCase):
    def test_a_resumed_worker_sends_nothing_once_its_master_is_gone(self):
        with lib.nginx() as server, lib.workers(1) as ws:
            path = lib.write_scenario(self.tmp, scenario(server.url, 4, "30s"))
            proc = lib.start_master(["--workers", ws.hosts_file, "--heartbeat-timeout", "2s",
                                     "--quiet", path], self.tmp)
            try:
                time.sleep(1.5)
                self.assertIsNone(proc.poll(), "master ended before the freeze")
                ws[0].kill(signal.SIGSTOP)
                # The master declares the worker lost after 2 s, halts (on_worker_lost: halt)
                # and exits.
                rc, out, err = lib.finish_master(proc, self.tmp, 15)
            finally:
                if proc.poll() is None:
                    proc.kill()
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            time.sleep(1.0)  # the master's last word is long gone: and the worker still frozen
            before = lib.wait_access_log_stable(server.access_log)
            ws[0].kill(signal.SIGCONT)
            time.sleep(1.5)
            after = lib.wait_access_log_stable(server.access_log)
            self.assertTrue(ws[0].alive(), context)
        print(f"\n  frozen worker resumed after its master left: nginx {before} -> {after}")
        self.assertEqual(rc, 3, context)
        self.assertEqual(after, before, f"requests sent after the resume\n{context}")


class PrepareSizeTest(lib.TempDirTestCase, unittest.TestCase):
    def test_a_prepare_over_the_limit_is_refused_at_once_with_dry_run(self):
        csv = os.path.join(self.tmp, "big.csv")
        row = "x" * 999 + "\n"
        with open(csv, "w") as f:
            f.write("id\n")
            f.write(row * 70_000)  # ~70 MB
        text = scenario("http://127.0.0.1:9/", 2, "2s")
        text += "data:\n  big:\n    csv: big.csv\n    split: shared\n"
        path = lib.write_scenario(self.tmp, text)
        started = time.monotonic()
        rc, out, err = lib.run_master(["--dry-run", path], timeout=30)
        elapsed = time.monotonic() - started
        context = lib.describe(rc, out, err)
        print(f"\n  70 MB feeder, --dry-run: exit {rc} after {elapsed:.2f}s")
        self.assertEqual(rc, 2, context)
        lib.assert_no_crash(self, err, context)
        self.assertIn("64 MiB", err, context)
        self.assertRegex(err, r"6[6-9]\.\d MiB", context)
        self.assertIn("big.csv", err, context)
        # Parsing 70 MB of CSV takes the master a moment; no --connect-timeout (5 s) wait.
        self.assertLess(elapsed, 4.5, context)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def start_limited_worker(port, nofile, log_path):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    with open(log_path, "w") as log:
        return subprocess.Popen(
            [lib.binary("worker"), "--listen", f"tcp://{lib.LOOPBACK}:{port}", "--threads", "1"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=limit,
            start_new_session=True)


class DescriptorTest(lib.TempDirTestCase, unittest.TestCase):
    def test_idle_control_connections_are_closed_after_the_handshake_interval(self):
        with lib.workers(1) as ws:
            conns = [socket.create_connection((lib.LOOPBACK, ws[0].port), timeout=10)
                     for _ in range(20)]
            started = time.monotonic()
            closed_after = []
            try:
                for c in conns:
                    data = c.recv(1024)  # the ZMTP greeting, then EOF when the worker closes
                    while data:
                        data = c.recv(1024)
                    closed_after.append(time.monotonic() - started)
            except socket.timeout:
                pass
            finally:
                for c in conns:
                    c.close()
            self.assertTrue(ws[0].alive(), ws.stderr())
        print(f"\n  20 idle control connections: closed after {max(closed_after or [0]):.1f}s")
        self.assertEqual(len(closed_after), len(conns), "some idle connections stayed open")
        self.assertLess(max(closed_after), 6.0, closed_after)

    def test_a_worker_out_of_descriptors_blames_itself_not_the_target(self):
        for engine in ("beast", "curl"):
            with self.subTest(engine), lib.nginx() as server:
                port = lib.free_port()
                log_path = os.path.join(self.tmp, f"worker-{engine}.log")
                worker = start_limited_worker(port, 40, log_path)
                try:
                    deadline = time.monotonic() + 10
                    while "listening on" not in read(log_path):
                        self.assertLess(time.monotonic(), deadline, read(log_path))
                        self.assertIsNone(worker.poll(), read(log_path))
                        time.sleep(0.02)
                    hosts = os.path.join(self.tmp, "hosts.txt")
                    with open(hosts, "w") as f:
                        f.write(f"{lib.LOOPBACK}:{port}\n")
                    path = lib.write_scenario(
                        self.tmp, scenario(server.url, 60, "1s", halt={"on_error": "never"},
                                           http={"engine": engine}))
                    out_dir = os.path.join(self.tmp, f"out-{engine}")
                    rc, out, err = lib.run_master(["--workers", hosts, "--out", out_dir,
                                                   "--quiet", path], timeout=30)
                finally:
                    worker.send_signal(signal.SIGTERM)
                    worker.wait(timeout=10)
                context = lib.describe(rc, out, err) + "\n" + read(log_path)
                report = lib.load_report(out_dir)
                kinds = report["steps"][0]["errors_by_kind"]
                print(f"\n  {engine}, 60 users with 40 descriptors: {kinds}")
                self.assertGreater(kinds.get("generator_fd_exhausted", 0), 0, context)
                self.assertEqual(set(kinds), {"generator_fd_exhausted"}, context)


if __name__ == "__main__":
    unittest.main(verbosity=2)
