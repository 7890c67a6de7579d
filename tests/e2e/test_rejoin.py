"""End to end, workers that rejoin a running test (issue 15): under `on_worker_lost: rejoin`
three workers share an open-model load; one is SIGKILLed mid-run and restarted on the same port.
The master, which keeps probing the worker it lost, gives it its share back with a Start on the
run's clock: nginx's per-second count returns to the scenario's rate, the report's workers[]
records the leave and the join, and the totals stay exact against nginx (the killed process's
requests after its last Stats aside, which died with it and are estimated)."""

import collections
import csv
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

RATE = 240           # requests per second, cluster-wide
DURATION_S = 14
KILL_AFTER_S = 3.5   # after the master started (the load starts ~0.5 s later)
HEARTBEAT_TIMEOUT_S = 2
# Restarted after the master declared it lost: the master must have kept probing it.
RESTART_AFTER_KILL_S = HEARTBEAT_TIMEOUT_S + 1.5


def t0_wall(entries):
    """The run's start on the wall clock: nginx's first request."""
    return min(e.time for e in entries)


def restart_on_its_port(ws, index):
    """SIGKILLs worker `index`, and once the master has declared it lost starts a new worker on
    the same port (the master still dials it). Returns (the killed daemon, kill time, restart
    time) on the wall clock."""
    victim = ws[index]
    victim.kill(signal.SIGKILL)
    victim.proc.wait()
    killed_at = time.time()
    time.sleep(RESTART_AFTER_KILL_S)
    restarted_at = time.time()
    log = os.path.join(ws.dir, f"worker{index}-restarted.log")
    restarted = lib.start_worker_process(
        ["--listen", f"tcp://{lib.LOOPBACK}:{victim.port}", "--threads", 1], log)
    ws.daemons[index] = lib.WorkerDaemon(restarted, victim.port, log)
    return victim, killed_at, restarted_at


def replace_by_a_dialling_worker(ws, index, endpoint):
    """Reverse mode: SIGKILLs worker `index`, and once the master has declared it lost starts a
    new worker that dials `endpoint`. Returns the kill time on the wall clock."""
    ws[index].kill(signal.SIGKILL)
    ws[index].proc.wait()
    killed_at = time.time()
    time.sleep(RESTART_AFTER_KILL_S)
    log = os.path.join(ws.dir, "worker-new.log")
    new = lib.start_worker_process(["--master", endpoint, "--threads", 1], log)
    ws.daemons.append(lib.WorkerDaemon(new, None, log))
    return killed_at


def run_with_a_kill(test, proc, kill):
    """Lets the master `proc` run KILL_AFTER_S, calls `kill()`, and waits for the master's end.
    Returns (rc, out, err, what kill() returned); the master never outlives the test."""
    try:
        time.sleep(KILL_AFTER_S)
        test.assertIsNone(proc.poll(), "the master ended before the kill")
        result = kill()
        rc, out, err = lib.finish_master(proc, test.tmp, DURATION_S + 20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, out, err, result


class RejoinTest(lib.TempDirTestCase, unittest.TestCase):
    def run_reverse_with_a_replacement(self, server, ws, endpoint, path, out_dir):
        """Reverse mode, three workers dialling `endpoint`: runs the scenario at `path`, kills
        worker 1 and starts a new dialling worker in its place (replace_by_a_dialling_worker).
        Returns (rc, out, err, the kill's wall time, context, nginx's access-log entries)."""
        proc = lib.start_master(["--listen", endpoint, "--expect-workers", 3, "--out", out_dir,
                                 "--quiet", "--heartbeat-timeout", f"{HEARTBEAT_TIMEOUT_S}s",
                                 path], self.tmp)
        rc, out, err, killed_at = run_with_a_kill(
            self, proc, lambda: replace_by_a_dialling_worker(ws, 1, endpoint))
        context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        lib.wait_access_log_stable(server.access_log)
        return rc, out, err, killed_at, context, lib.parse_access_log(server.access_log)

    def test_a_killed_worker_restarted_on_its_port_rejoins_and_the_load_returns(self):
        with lib.nginx() as server, lib.workers(3) as ws:
            path = lib.write_scenario(self.tmp, f"""\
                name: e2e-rejoin
                target: {server.url}
                load: {{rate: {RATE}/s, duration: {DURATION_S}s}}
                halt: {{on_worker_lost: rejoin}}
                flows:
                  - name: main
                    steps:
                      - get: /
                        name: main
                """)
            out_dir = os.path.join(self.tmp, "out")
            proc = lib.start_master(["--workers", ws.hosts_file, "--out", out_dir, "--quiet",
                                     "--heartbeat-timeout", f"{HEARTBEAT_TIMEOUT_S}s", path],
                                    self.tmp)
            rc, out, err, (victim, killed_at, restarted_at) = run_with_a_kill(
                self, proc, lambda: restart_on_its_port(ws, 1))
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lib.wait_access_log_stable(server.access_log)
            entries = lib.parse_access_log(server.access_log)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        workers = {w["address"]: w for w in report["workers"]}
        rejoined = workers[victim.address]
        context += f"\nworkers: {report['workers']}"

        # workers[]: the leave and the join, in order, with their times; it ran to the end.
        events = rejoined["events"]
        self.assertEqual([e["event"] for e in events], ["lost", "joined"], context)
        lost_at, joined_at = events[0]["at_s"], events[1]["at_s"]
        self.assertLess(lost_at, joined_at, context)
        self.assertLess(joined_at - lost_at, RESTART_AFTER_KILL_S + 2.5, context)
        self.assertEqual(rejoined["state"], "done", context)
        self.assertGreater(joined_at, restarted_at - t0_wall(entries), context)
        self.assertLess(joined_at, restarted_at - t0_wall(entries) + 3.0,
                        "rejoined within a few seconds of its restart\n" + context)
        for address, w in workers.items():
            if address != victim.address:
                self.assertEqual(w["events"], [], context)
        self.assertIn("rejoined the run", err, context)

        # timeseries.csv: the row of each second says who left and who joined in it, and how
        # many workers ran.
        with open(os.path.join(out_dir, "timeseries.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["late"] == "0"]
        marked = [(float(r["elapsed_s"]), e) for r in rows for e in r["events"].split(";") if e]
        self.assertEqual([e for _, e in marked],
                         [f"lost {victim.address}", f"joined {victim.address}"], context)
        self.assertAlmostEqual(marked[0][0], lost_at, delta=1.0, msg=context)
        self.assertAlmostEqual(marked[1][0], joined_at, delta=1.0, msg=context)
        in_run = {round(float(r["elapsed_s"])): int(r["workers"]) for r in rows}
        self.assertEqual(in_run[1], 3, context)
        self.assertEqual(in_run[int(lost_at) + 1], 2, context)
        self.assertEqual(in_run[int(joined_at) + 1], 3, context)
        self.assertEqual(int(rows[-1]["workers"]), 3, context)

        self.assert_load_returns_and_totals_hold(entries, report, killed_at, lost_at, joined_at,
                                                 rejoined["unreported_requests_estimate"], context)

    def assert_load_returns_and_totals_hold(self, entries, report, killed_at, lost_at, joined_at,
                                            est, context):
        # nginx's per-second count: full rate before the kill, two thirds while it is lost,
        # full rate again after the join. Time 0 is nginx's first request (the run's t0).
        t0 = t0_wall(entries)
        per_second = [0] * (DURATION_S + 2)
        for e in entries:
            per_second[min(int(e.time - t0), DURATION_S + 1)] += 1
        before = per_second[1:int(killed_at - t0)]
        gap = per_second[int(killed_at - t0) + 1:int(joined_at)]
        after = per_second[int(joined_at) + 1:DURATION_S - 1]
        print(f"\n  nginx per second: {per_second}; lost at {lost_at:.1f}s, joined at "
              f"{joined_at:.1f}s")
        context += f"\nper second {per_second}, lost {lost_at}, joined {joined_at}"
        self.assertTrue(before and gap and after, context)
        for count in before + after:
            self.assertGreaterEqual(count, 0.9 * RATE, context)
            self.assertLessEqual(count, 1.1 * RATE, context)
        for count in gap:
            self.assertLessEqual(count, 0.8 * RATE, context)
        # No second over the rate: the joining worker does not catch up on arrivals that were
        # the lost one's.
        for count in per_second:
            self.assertLessEqual(count, 1.1 * RATE, context)
        # Totals: every request the cluster reported reached nginx; what nginx has beyond them
        # is the killed process's requests after its last Stats, inside the estimate's range.
        total = report["totals"]["requests"]
        print(f"  nginx {len(entries)}, report {total}, estimated unreported {est}")
        self.assertLessEqual(total, len(entries), context)
        self.assertGreaterEqual(len(entries) - total, 0, context)
        self.assertLessEqual(len(entries) - total, (est["high"] if est else 0) + 2, context)
        self.assertGreaterEqual(len(entries) - total, (est["low"] if est else 0) - 2, context)


    def test_reverse_mode_a_new_worker_dialling_in_takes_the_lost_ones_place(self):
        endpoint = f"tcp://{lib.LOOPBACK}:{lib.free_port()}"
        with lib.nginx() as server, lib.dialling_workers(3, endpoint) as ws:
            path = lib.write_scenario(self.tmp, f"""\
                name: e2e-rejoin-reverse
                target: {server.url}
                load: {{rate: {RATE}/s, duration: {DURATION_S}s}}
                halt: {{on_worker_lost: rejoin}}
                flows:
                  - name: main
                    steps:
                      - get: /
                        name: main
                """)
            out_dir = os.path.join(self.tmp, "out")
            rc, out, err, killed_at, context, entries = self.run_reverse_with_a_replacement(
                server, ws, endpoint, path, out_dir)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        context += f"\nworkers: {report['workers']}"
        by_events = {tuple(e["event"] for e in w["events"]): w for w in report["workers"]}
        self.assertEqual(sorted(by_events), [(), ("joined",), ("lost",)], context)
        lost, new = by_events[("lost",)], by_events[("joined",)]
        self.assertEqual(lost["state"], "lost", context)
        self.assertEqual(new["state"], "done", context)
        self.assertEqual(new["id"], lost["id"], "the new worker has the lost one's place\n" + context)
        self.assertGreater(new["requests"], 0, context)
        self.assertEqual(len(report["workers"]), 4, context)
        lost_at, joined_at = lost["events"][0]["at_s"], new["events"][0]["at_s"]
        self.assertLess(joined_at - lost_at, RESTART_AFTER_KILL_S + 2.5, context)
        self.assertIn("takes the place of", err, context)
        with open(os.path.join(out_dir, "timeseries.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["late"] == "0"]
        in_run = {round(float(r["elapsed_s"])): int(r["workers"]) for r in rows}
        self.assertEqual(in_run[int(lost_at) + 1], 2, context)
        self.assertEqual(in_run[int(joined_at) + 1], 3, context)
        self.assert_load_returns_and_totals_hold(entries, report, killed_at, lost_at, joined_at,
                                                 lost["unreported_requests_estimate"], context)

    def test_a_rejoined_worker_uses_no_feeder_row_twice_and_the_live_line_shows_it(self):
        # A per_worker feeder whose rows are in the URL: nginx's log shows every row used. The
        # restarted worker continues its place's slice past the rows the killed one used (and
        # the few it may have used after its last Stats), instead of from the first row.
        rows = 3000
        with open(os.path.join(self.tmp, "ids.csv"), "w") as f:
            f.write("id\n" + "".join(f"row{i}\n" for i in range(rows)))
        rate = 120
        with lib.nginx() as server, lib.workers(3) as ws:
            path = lib.write_scenario(self.tmp, f"""\
                name: e2e-rejoin-feeder
                target: {server.url}
                load: {{rate: {rate}/s, duration: {DURATION_S}s}}
                halt: {{on_worker_lost: rejoin}}
                data:
                  ids: {{csv: ids.csv, split: per_worker, on_exhausted: stop}}
                flows:
                  - name: main
                    steps:
                      - get: "/?id={{{{ids.id}}}}"
                        name: row
                """)
            out_dir = os.path.join(self.tmp, "out")
            # Not --quiet: the live line names the leave and the join.
            proc = lib.start_master(["--workers", ws.hosts_file, "--out", out_dir,
                                     "--heartbeat-timeout", f"{HEARTBEAT_TIMEOUT_S}s", path],
                                    self.tmp)
            rc, out, err, (victim, _, _) = run_with_a_kill(
                self, proc, lambda: restart_on_its_port(ws, 1))
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lib.wait_access_log_stable(server.access_log)
            entries = lib.parse_access_log(server.access_log)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        rejoined = {w["address"]: w for w in report["workers"]}[victim.address]
        self.assertEqual([e["event"] for e in rejoined["events"]], ["lost", "joined"], context)
        used = collections.Counter(e.uri.split("id=", 1)[1] for e in entries)
        twice = {row: n for row, n in used.items() if n > 1}
        print(f"\n  rows used {len(used)} by {len(entries)} requests; used twice: {len(twice)}")
        self.assertGreater(len(entries), rate * (DURATION_S - 4), context)
        self.assertEqual(twice, {}, "no feeder row used twice across the kill and the rejoin\n"
                         + context)
        self.assertEqual(report["workers"][1]["state"], "done", context)
        # The live line: the second the worker was lost, and the one it joined again in.
        live = [line for line in out.splitlines() if " rps " in line]
        self.assertTrue(any(f"[lost {victim.address}]" in line for line in live), context)
        self.assertTrue(any(f"[joined {victim.address}]" in line for line in live), context)

    def test_reverse_mode_the_worker_in_the_lost_ones_place_uses_no_shuffled_row_twice(self):
        # A shuffle feeder: the new worker draws the place's order again (seeded by the run and
        # the place) and goes on from where the place had reached.
        rows = 3000
        with open(os.path.join(self.tmp, "ids.csv"), "w") as f:
            f.write("id\n" + "".join(f"row{i}\n" for i in range(rows)))
        endpoint = f"tcp://{lib.LOOPBACK}:{lib.free_port()}"
        with lib.nginx() as server, lib.dialling_workers(3, endpoint) as ws:
            path = lib.write_scenario(self.tmp, f"""\
                name: e2e-rejoin-feeder-reverse
                target: {server.url}
                load: {{rate: 120/s, duration: {DURATION_S}s}}
                halt: {{on_worker_lost: rejoin}}
                data:
                  ids: {{csv: ids.csv, split: per_worker, order: shuffle, on_exhausted: stop}}
                flows:
                  - name: main
                    steps:
                      - get: "/?id={{{{ids.id}}}}"
                        name: row
                """)
            out_dir = os.path.join(self.tmp, "out")
            rc, out, err, _, context, entries = self.run_reverse_with_a_replacement(
                server, ws, endpoint, path, out_dir)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        new = [w for w in report["workers"] if [e["event"] for e in w["events"]] == ["joined"]]
        self.assertEqual(len(new), 1, context)
        self.assertGreater(new[0]["requests"], 0, context)
        used = collections.Counter(e.uri.split("id=", 1)[1] for e in entries)
        twice = {row: n for row, n in used.items() if n > 1}
        print(f"\n  rows used {len(used)} by {len(entries)} requests; used twice: {len(twice)}")
        self.assertEqual(twice, {}, "no feeder row used twice across the loss and the new "
                         "worker in its place\n" + context)

    def test_a_worker_stopped_by_its_operator_is_a_leave_in_the_events(self):
        # SIGTERM: its last figures come in a Final that says it leaves. The leave is in
        # workers[].events with its reason, in the timeseries row of its second, and the rows
        # after it count one worker fewer.
        with lib.nginx() as server, lib.workers(2) as ws:
            path = lib.write_scenario(self.tmp, f"""\
                name: e2e-left-event
                target: {server.url}
                load: {{rate: 100/s, duration: 6s}}
                halt: {{on_worker_lost: continue}}
                flows:
                  - name: main
                    steps:
                      - get: /
                """)
            out_dir = os.path.join(self.tmp, "out")
            proc = lib.start_master(["--workers", ws.hosts_file, "--out", out_dir, path],
                                    self.tmp)
            try:
                time.sleep(2.5)
                ws[1].kill(signal.SIGTERM)
                rc, out, err = lib.finish_master(proc, self.tmp, 30)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        report = lib.load_report(out_dir)
        context += f"\nworkers: {report['workers']}"
        left = {w["address"]: w for w in report["workers"]}[ws[1].address]
        self.assertEqual(left["state"], "left", context)
        self.assertEqual([e["event"] for e in left["events"]], ["left"], context)
        self.assertIn("stopped (SIGINT or SIGTERM)", left["events"][0]["reason"], context)
        at_s = left["events"][0]["at_s"]
        with open(os.path.join(out_dir, "timeseries.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["late"] == "0"]
        marked = [(float(r["elapsed_s"]), e) for r in rows for e in r["events"].split(";") if e]
        self.assertEqual([e for _, e in marked], [f"left {ws[1].address}"], context)
        self.assertAlmostEqual(marked[0][0], at_s, delta=1.0, msg=context)
        in_run = {round(float(r["elapsed_s"])): int(r["workers"]) for r in rows}
        self.assertEqual(in_run[1], 2, context)
        self.assertEqual(in_run[int(at_s) + 2], 1, context)
        self.assertTrue(any(f"[left {ws[1].address}]" in line for line in out.splitlines()),
                        context)


if __name__ == "__main__":
    unittest.main(verbosity=2)
