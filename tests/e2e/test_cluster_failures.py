"""End to end, cluster mode failures (issue 3): a worker killed mid-run (halt or continue), an
unreachable worker (with and without --min-workers), a malformed hosts file, and a master killed
mid-run (its workers stop within their heartbeat timeout and take the next master)."""

import os
import re
import signal
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

HEARTBEAT_TIMEOUT_S = 3.0   # the master's default --heartbeat-timeout
KILL_AFTER_S = 2.0


def scenario(url, users, duration, path="/", on_worker_lost=None, name="e2e-cluster-failures"):
    halt = {"on_worker_lost": on_worker_lost} if on_worker_lost else None
    return lib.one_get_scenario(url, users, duration, name, path=path, step="main", halt=halt)


class WorkerLostTest(lib.TempDirTestCase, unittest.TestCase):
    def run_and_kill_one_worker(self, on_worker_lost, duration_s):
        """3 workers vs nginx; SIGKILL worker 1 KILL_AFTER_S into the run.

        Returns (rc, out, err, started, killed, ended, report, killed_address, context).
        """
        with lib.nginx() as server, lib.workers(3) as ws:
            path = lib.write_scenario(
                self.tmp, scenario(server.url, 15, f"{duration_s}s", on_worker_lost=on_worker_lost))
            out_dir = os.path.join(self.tmp, "out")
            started = time.monotonic()
            rc, out, err, killed, ended = lib.run_master_and_act(
                ["--workers", ws.hosts_file, "--out", out_dir, "--quiet", path], self.tmp,
                KILL_AFTER_S, lambda: ws[1].kill(signal.SIGKILL), duration_s + 15, "the kill")
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            report = lib.load_report(out_dir) if rc is not None else None
            return rc, out, err, started, killed, ended, report, ws[1].address, context

    def assert_one_lost_others_done(self, report, lost_address):
        """3 workers in the report: the lost one with its data up to the kill received and
        kept, the others done; their requests add up to the totals."""
        workers = {w["address"]: w for w in report["workers"]}
        self.assertEqual(len(workers), 3, report["workers"])
        self.assertEqual(workers[lost_address]["state"], "lost", workers[lost_address])
        self.assertGreater(workers[lost_address]["requests"], 0, workers[lost_address])
        for address, w in workers.items():
            if address != lost_address:
                self.assertEqual(w["state"], "done", w)
                self.assertGreater(w["requests"], 0, w)
        self.assertEqual(sum(w["requests"] for w in workers.values()),
                         report["totals"]["requests"], report["workers"])

    def test_sigkilled_worker_halts_the_cluster(self):
        rc, out, err, started, killed, ended, report, lost_address, context = \
            self.run_and_kill_one_worker("halt", 10)
        detected = ended - killed
        print(f"\n  worker SIGKILLed: master exited {detected:.2f}s after the kill")
        self.assertIsNotNone(rc, f"master did not exit\n{context}")
        self.assertEqual(rc, 3, context)
        lib.assert_no_crash(self, err, context)
        # Lost within heartbeat-timeout (+1 s slack); the exit itself adds a little.
        self.assertLessEqual(detected, HEARTBEAT_TIMEOUT_S + 1.5, context)
        self.assertIn(lost_address, err, context)
        self.assertIn("lost", err, context)

        lib.assert_halted(self, report, 3, "worker_lost")
        # The report holds what was received so far.
        self.assertGreater(report["totals"]["requests"], 0, report["totals"])
        self.assertLess(report["duration_s"], 8, report)
        self.assert_one_lost_others_done(report, lost_address)

    def test_sigkilled_worker_with_continue_runs_to_the_end(self):
        duration_s = 7
        rc, out, err, started, killed, ended, report, lost_address, context = \
            self.run_and_kill_one_worker("continue", duration_s)
        print(f"\n  worker SIGKILLed, on_worker_lost continue: master took {ended - started:.1f}s")
        self.assertIsNotNone(rc, f"master did not exit\n{context}")
        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        self.assertGreaterEqual(ended - started, duration_s - 0.5, context)
        self.assertIn(lost_address, err, context)

        self.assertEqual(report["exit_code"], 0, report)
        self.assertIsNone(report["halt"], report)
        self.assertGreaterEqual(report["duration_s"], duration_s - 0.5, report)
        self.assert_one_lost_others_done(report, lost_address)

    def test_a_lost_workers_unreported_requests_are_warned_about_and_estimated(self):
        # Open model at a fixed rate: the lost worker's pace does not depend on a busy machine,
        # so its estimate can be held to nginx's count.
        rate, duration_s = 600, 6
        with lib.nginx() as server, lib.workers(3) as ws:
            path = lib.write_scenario(self.tmp, f"""\
                name: e2e-lost-estimate
                target: {server.url}
                load: {{rate: {rate}/s, duration: {duration_s}s}}
                halt: {{on_worker_lost: continue}}
                flows:
                  - name: main
                    steps:
                      - get: /
                        name: main
                """)
            out_dir = os.path.join(self.tmp, "out")
            rc, out, err, killed, ended = lib.run_master_and_act(
                ["--workers", ws.hosts_file, "--out", out_dir, "--quiet", path], self.tmp,
                KILL_AFTER_S, lambda: ws[1].kill(signal.SIGKILL), duration_s + 15, "the kill")
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lines = lib.wait_access_log_stable(server.access_log)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        lost_address = ws[1].address
        lost = {w["address"]: w for w in report["workers"]}[lost_address]
        total = report["totals"]["requests"]
        estimate = report["unreported_requests_estimate"]
        print(f"\n  lost worker: nginx {lines}, report {total} + estimated {estimate} "
              f"({lost['unreported_requests_estimate']}); warnings {report['warnings']}")
        context += f"\nnginx {lines}, report {report}"

        # Said in warnings, in the summary and in workers[]: which worker, when, its counts.
        warnings = [w for w in report["warnings"] if lost_address in w]
        self.assertEqual(len(warnings), 1, context)
        self.assertIn("lost at", warnings[0], context)
        self.assertIn(f"{lost['requests']} requests", warnings[0], context)
        self.assertIn("estimated", warnings[0], context)
        self.assertIn(lost_address, "".join(l for l in out.splitlines() if "WARNING" in l),
                      context)
        self.assertEqual(lost["state"], "lost", context)
        self.assertAlmostEqual(lost["lost_at_s"], KILL_AFTER_S + HEARTBEAT_TIMEOUT_S, delta=1.5,
                               msg=context)
        self.assertLess(lost["last_stats_at_s"], lost["lost_at_s"], context)
        range_ = lost["unreported_requests_estimate"]
        self.assertEqual(range_["requests"], estimate, context)
        self.assertLessEqual(range_["low"], estimate, context)
        self.assertLessEqual(estimate, range_["high"], context)

        # The totals alone fall short of nginx's count; with the estimate they come within its
        # stated range (half of it either way) plus a little for the rate's jitter and the
        # requests in flight at the kill.
        missing = lines - total
        per_worker_rate = rate / 3
        slack = 0.1 * per_worker_rate + 10
        self.assertGreater(missing, 0, context)
        self.assertLessEqual(abs(missing - estimate), (range_["high"] - range_["low"]) / 2 + slack,
                             context)


class UnreachableAndHostsFileTest(lib.TempDirTestCase, unittest.TestCase):
    def write_hosts(self, lines, name="hosts.txt"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def test_unreachable_worker_fails_fast_naming_it(self):
        dead = f"{lib.LOOPBACK}:{lib.free_port()}"
        hosts = self.write_hosts([dead])
        path = lib.write_scenario(self.tmp, scenario("http://127.0.0.1:9/", 2, "2s"))
        started = time.monotonic()
        rc, out, err = lib.run_master(["--workers", hosts, "--connect-timeout", "1s", "--quiet",
                                       path], timeout=20)
        elapsed = time.monotonic() - started
        context = lib.describe(rc, out, err)
        print(f"\n  unreachable worker: exit {rc} after {elapsed:.2f}s")
        self.assertEqual(rc, 3, context)
        lib.assert_no_crash(self, err, context)
        self.assertLess(elapsed, 2.5, context)
        naming = [line for line in err.splitlines() if dead in line]
        self.assertEqual(len(naming), 1, f"one stderr line should name {dead}\n{context}")

    def test_min_workers_starts_with_fewer_and_reports_the_unreachable_one(self):
        with lib.nginx() as server, lib.workers(1) as ws:
            dead = f"{lib.LOOPBACK}:{lib.free_port()}"
            hosts = ws.write_hosts([ws[0].address, dead], name="hosts-with-dead.txt")
            path = lib.write_scenario(self.tmp, scenario(server.url, 4, "1s"))
            out_dir = os.path.join(self.tmp, "out")
            rc, out, err = lib.run_master(["--workers", hosts, "--connect-timeout", "1s",
                                           "--min-workers", 1, "--out", out_dir, "--quiet",
                                           path], timeout=20)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lines = lib.wait_access_log_stable(server.access_log)

        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        self.assertIn(dead, err, context)
        self.assertRegex(err, r"(?i)starting with 1 of 2", context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], "passed", report)
        workers = {w["address"]: w for w in report["workers"]}
        self.assertEqual(set(workers), {ws[0].address, dead}, report["workers"])
        self.assertEqual(workers[dead]["state"], "unreachable", workers[dead])
        self.assertEqual(workers[dead]["requests"], 0, workers[dead])
        self.assertEqual(workers[ws[0].address]["state"], "done", workers[ws[0].address])
        self.assertEqual(workers[ws[0].address]["users"], 4, workers[ws[0].address])
        self.assertEqual(report["totals"]["requests"], lines, report["totals"])
        self.assertEqual(workers[ws[0].address]["requests"], lines, workers)

    def test_malformed_hosts_file_is_refused_before_contacting_anyone(self):
        # A listener that would see the master's connection if it contacted the valid line.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.bind((lib.LOOPBACK, 0))
            listener.listen(8)
            listener.setblocking(False)
            good = f"{lib.LOOPBACK}:{listener.getsockname()[1]}"
            path = lib.write_scenario(self.tmp, scenario("http://127.0.0.1:9/", 2, "1s"))
            cases = {
                "bad port": ["# cluster", good, "127.0.0.1:99999"],
                "bad weight": ["# cluster", good, "127.0.0.1:7700 weight=x"],
            }
            for label, lines in cases.items():
                with self.subTest(label):
                    hosts = self.write_hosts(lines, name=f"hosts-{label.replace(' ', '-')}.txt")
                    rc, out, err = lib.run_master(["--workers", hosts, "--connect-timeout", "1s",
                                                   "--quiet", path], timeout=20)
                    context = lib.describe(rc, out, err)
                    self.assertEqual(rc, 2, context)
                    lib.assert_no_crash(self, err, context)
                    self.assertIn(f"{hosts}:3", err, f"stderr should point at file:line\n{context}")
                    time.sleep(0.1)
                    try:
                        conn, _ = listener.accept()
                        conn.close()
                        self.fail(f"the master contacted {good} despite the malformed file\n"
                                  f"{context}")
                    except BlockingIOError:
                        pass


class MasterKilledTest(lib.TempDirTestCase, unittest.TestCase):
    WORKER_HEARTBEAT_S = 2.0
    SLACK_S = 0.5

    def test_worker_stops_when_its_master_is_killed_and_serves_the_next_one(self):
        with lib.fault_target() as target, \
                lib.workers(1, extra_args=["--heartbeat-timeout", "2s"]) as ws:
            path = lib.write_scenario(self.tmp, scenario(target.url, 4, "20s", path="/ok"))
            # Not --quiet: the master prints its live line right after each heartbeat it sends,
            # so killing it just after the second line makes the worker's last message from
            # its master as recent as possible: the worst case for the worker's timeout.
            # Once welcomed, the master's --heartbeat-timeout is the worker's too (issue 11).
            proc = lib.start_master(["--workers", ws.hosts_file, "--heartbeat-timeout", "2s",
                                     path], self.tmp)
            stdout_path = os.path.join(self.tmp, "master.stdout")
            try:
                deadline = time.monotonic() + KILL_AFTER_S + 5
                while time.monotonic() < deadline and proc.poll() is None:
                    with open(stdout_path) as f:
                        ticks = [line for line in f if re.match(r"\s*\d+(\.\d+)?s /", line)]
                    if len(ticks) >= 2:
                        break
                    time.sleep(0.005)
                if proc.poll() is not None:
                    self.fail("master ended before the kill:\n" +
                              lib.describe(*lib.finish_master(proc, self.tmp, 1)))
                kill_wall_ms = time.time() * 1000
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            # Let the worker's timeout pass, plus a margin to see any straggler.
            time.sleep(self.WORKER_HEARTBEAT_S + self.SLACK_S + 1.5)
            entries = target.log_entries()
            before = [e for e in entries if e[1] <= kill_wall_ms]
            limit_ms = kill_wall_ms + (self.WORKER_HEARTBEAT_S + self.SLACK_S) * 1000
            late = [e for e in entries if e[1] > limit_ms]
            last_ms = max((e[1] for e in entries), default=kill_wall_ms)
            print(f"\n  master SIGKILLed: last request reached the target "
                  f"{(last_ms - kill_wall_ms) / 1000:.2f}s after the kill "
                  f"(limit {self.WORKER_HEARTBEAT_S + self.SLACK_S:.1f}s); "
                  f"{len(late)} late requests")
            worker_log = ws.stderr()
            self.assertTrue(ws[0].alive(), f"the worker died\n{worker_log}")

            # The worker is idle again: a new master runs against it right away.
            out_dir = os.path.join(self.tmp, "out")
            path2 = lib.write_scenario(self.tmp, scenario(target.url, 2, "1s", path="/ok",
                                                          name="e2e-after-master-killed"),
                                       name="again.yaml")
            rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--out", out_dir,
                                           "--quiet", path2], timeout=30)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()

        self.assertGreater(len(before), 0, "no load reached the target before the kill")
        with self.subTest("load stopped within the worker's heartbeat timeout"):
            self.assertEqual(len(late), 0, f"{len(late)} requests later than kill + "
                                       f"{self.WORKER_HEARTBEAT_S + self.SLACK_S}s; first "
                                       f"{(late[0][1] - kill_wall_ms) / 1000 if late else 0:.2f}s "
                                       f"after the kill\n{worker_log}")
            self.assertIn("master silent", worker_log)
        with self.subTest("the next master runs"):
            self.assertEqual(rc, 0, context)
            report = lib.load_report(out_dir)
            self.assertEqual(report["outcome"], "passed", report)
            self.assertEqual(report["workers"][0]["state"], "done", report["workers"])
            self.assertGreater(report["totals"]["requests"], 0, report["totals"])


class WorkerFrozenTest(lib.TempDirTestCase, unittest.TestCase):
    """A worker frozen with SIGSTOP mid-run is lost like a dead one; once resumed (SIGCONT) it
    must not corrupt the next run: no stale load from the old run, exact totals."""

    DURATION_S = 8
    STOP_AFTER_S = 2.0
    RESUME_SETTLE_S = 4.0   # at most this long from SIGCONT to the next master

    @staticmethod
    def frozen_scenario(url, run, duration):
        # The run and the worker index ride in the query, so the target's log tells which run
        # (and which worker) sent each request; fault_target routes on the path alone.
        return (f"name: e2e-frozen-worker-run{run}\n"
                f"target: {url}\n"
                f"load:\n  users: 15\n  duration: {duration}\n"
                f"halt:\n  on_worker_lost: halt\n"
                f"flows:\n"
                f"  - name: main\n"
                f"    think: 10ms\n"
                f"    steps:\n"
                f"      - get: \"/ok?run={run}&w={{{{worker_index}}}}\"\n"
                f"        name: ok\n")

    def test_sigstopped_worker_is_lost_and_does_not_corrupt_the_next_run(self):
        with lib.fault_target() as target, lib.workers(3) as ws:
            frozen = ws[1]
            # Whatever happens, never leave a stopped worker behind (SIGTERM would wait).
            self.addCleanup(lambda: frozen.proc.poll() is None and
                            frozen.proc.send_signal(signal.SIGCONT))
            path1 = lib.write_scenario(
                self.tmp, self.frozen_scenario(target.url, 1, f"{self.DURATION_S}s"),
                name="run1.yaml")
            out1 = os.path.join(self.tmp, "out1")
            try:
                rc1, stdout1, err1, stopped, ended = lib.run_master_and_act(
                    ["--workers", ws.hosts_file, "--out", out1, "--quiet", path1], self.tmp,
                    self.STOP_AFTER_S, lambda: frozen.kill(signal.SIGSTOP),
                    self.DURATION_S + 15, "the SIGSTOP")
            finally:
                resumed = frozen.kill(signal.SIGCONT)
                resumed_wall_ms = time.time() * 1000
            context1 = lib.describe(rc1, stdout1, err1) + "\n" + ws.stderr()
            detected = ended - stopped
            print(f"\n  worker SIGSTOPped: master exited {detected:.2f}s after the stop")

            # The resumed worker finds its master gone and goes back to idle: start the next
            # run once it says so, and at the latest RESUME_SETTLE_S after the SIGCONT.
            log_before = frozen.stderr().count("master silent")
            while time.monotonic() < resumed + self.RESUME_SETTLE_S:
                if frozen.stderr().count("master silent") > log_before:
                    break
                time.sleep(0.05)
            idle_after = time.monotonic() - resumed
            print(f"  resumed worker idle again {idle_after:.2f}s after SIGCONT")
            time.sleep(0.2)
            self.assertTrue(frozen.alive(), f"the resumed worker died\n{ws.stderr()}")
            # The next run, against all three, the resumed one included.
            path2 = lib.write_scenario(self.tmp, self.frozen_scenario(target.url, 2, "3s"),
                                       name="run2.yaml")
            out2 = os.path.join(self.tmp, "out2")
            before = target.count()
            second_started_wall_ms = time.time() * 1000
            rc2, stdout2, err2 = lib.run_master(["--workers", ws.hosts_file, "--out", out2,
                                            "--quiet", path2], timeout=30)
            time.sleep(0.2)
            after = target.count()
            entries = target.log_entries()
            context2 = lib.describe(rc2, stdout2, err2) + "\n" + ws.stderr()

        # --- run 1: the frozen worker is lost within the heartbeat timeout (+1 s slack)
        self.assertIsNotNone(rc1, f"master did not exit\n{context1}")
        self.assertEqual(rc1, 3, context1)
        lib.assert_no_crash(self, err1, context1)
        self.assertLessEqual(detected, HEARTBEAT_TIMEOUT_S + 1.0, context1)
        # ...and not before it could tell (its last message is at most ~1 s older than the stop).
        self.assertGreaterEqual(detected, HEARTBEAT_TIMEOUT_S - 1.1, context1)
        self.assertIn(frozen.address, err1, context1)
        report1 = lib.load_report(out1)
        self.assertEqual(report1["exit_code"], 3, report1)
        self.assertEqual(report1["outcome"], "halted", report1)
        self.assertEqual(report1["halt"]["reason"], "worker_lost", report1["halt"])
        lib.assert_halt_figures(self, report1)
        workers1 = {w["address"]: w for w in report1["workers"]}
        self.assertEqual(len(workers1), 3, report1["workers"])
        self.assertEqual(workers1[frozen.address]["state"], "lost", workers1[frozen.address])
        self.assertGreater(workers1[frozen.address]["requests"], 0, workers1[frozen.address])
        for address, w in workers1.items():
            if address != frozen.address:
                self.assertEqual(w["state"], "done", w)

        # --- between the runs: whatever the resumed worker still sent of run 1
        stale = [e for e in entries if "run=1" in e[3] and e[1] > resumed_wall_ms]
        stale_in_run2 = [e for e in entries if "run=1" in e[3] and e[1] > second_started_wall_ms]
        last_stale_s = (max(e[1] for e in stale) - resumed_wall_ms) / 1000 if stale else 0.0
        print(f"  after SIGCONT: {len(stale)} stale run-1 requests reached the target (the "
              f"last {last_stale_s:.2f}s after it), {len(stale_in_run2)} of them during run 2")
        # A resumed worker whose master is gone stops its load within its heartbeat timeout.
        self.assertLessEqual(last_stale_s, HEARTBEAT_TIMEOUT_S + 1.0,
                             f"{len(stale)} stale run-1 requests after SIGCONT\n{context2}")

        # --- run 2: all three workers, exact totals
        self.assertEqual(rc2, 0, context2)
        lib.assert_no_crash(self, err2, context2)
        report2 = lib.load_report(out2)
        self.assertEqual(report2["outcome"], "passed", report2)
        self.assertIsNone(report2["halt"], report2)
        workers2 = report2["workers"]
        self.assertEqual(len(workers2), 3, workers2)
        for w in workers2:
            self.assertEqual(w["state"], "done", w)
            self.assertGreater(w["requests"], 0, w)
            self.assertEqual(w["errors"], 0, w)
        totals = report2["totals"]
        self.assertEqual(totals["errors"], 0, totals)
        self.assertEqual(sum(w["requests"] for w in workers2), totals["requests"], workers2)
        self.assertEqual(len(stale_in_run2), 0,
                         f"the resumed worker still sent run-1 requests during run 2: "
                         f"{stale_in_run2[:5]}\n{context2}")
        self.assertEqual(after - before, totals["requests"],
                         f"target count delta {after - before} != totals.requests "
                         f"{totals['requests']}\n{context2}")
        run2 = [e for e in entries if "run=2" in e[3]]
        self.assertEqual(len(run2), totals["requests"], totals)
        for w in workers2:
            sent = sum(1 for e in run2 if e[3].endswith(f"&w={w['id']}"))
            self.assertEqual(sent, w["requests"], (w, sent))


if __name__ == "__main__":
    unittest.main()
