"""End to end, workers beyond --expect-workers (issue 15): in reverse mode a master started with
`--expect-workers 2 --max-workers 3` admits a third worker that dials in mid-run and re-plans
every share, so that nginx's per-second count stays on the scenario's rate (open model) or the
users stay the scenario's (closed model), the newcomer gets its share, and the report's totals
equal nginx's count. Without --max-workers the third is refused, in one line on stderr."""

import collections
import csv
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

RATE = 240          # requests per second, cluster-wide
DURATION_S = 12
JOIN_AFTER_S = 4.0  # after the master started (the load starts ~0.5 s later)


def per_second(entries, seconds):
    """nginx's count per second of the run; second 0 starts with its first request."""
    t0 = min(e.time for e in entries)
    counts = [0] * (seconds + 2)
    for e in entries:
        counts[min(int(e.time - t0), seconds + 1)] += 1
    return counts


class ExtraWorkersTest(lib.TempDirTestCase, unittest.TestCase):
    def run_with_newcomer(self, scenario, master_args, join_after_s=JOIN_AFTER_S):
        endpoint = f"tcp://{lib.LOOPBACK}:{lib.free_port()}"
        with lib.nginx() as server, lib.dialling_workers(2, endpoint) as ws:
            path = lib.write_scenario(self.tmp, scenario.format(url=server.url))
            out_dir = os.path.join(self.tmp, "out")
            proc = lib.start_master(["--listen", endpoint, "--expect-workers", 2, "--out",
                                     out_dir, *master_args, path], self.tmp)
            try:
                time.sleep(join_after_s)
                self.assertIsNone(proc.poll(), "the master ended before the third dialled in")
                log = os.path.join(ws.dir, "worker-third.log")
                third = lib.start_worker_process(["--master", endpoint, "--threads", 1], log)
                ws.daemons.append(lib.WorkerDaemon(third, None, log))
                rc, out, err = lib.finish_master(proc, self.tmp, DURATION_S + 20)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lib.wait_access_log_stable(server.access_log)
            entries = lib.parse_access_log(server.access_log)
        lib.assert_no_crash(self, err, context)
        report = lib.load_report(out_dir)
        context += f"\nworkers: {report['workers']}"
        with open(os.path.join(out_dir, "timeseries.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["late"] == "0"]
        return rc, out, err, report, rows, entries, context

    def test_open_model_a_third_worker_gets_a_share_and_the_rate_stays_on_target(self):
        rc, out, err, report, rows, entries, context = self.run_with_newcomer(f"""\
            name: e2e-extra-open
            target: {{url}}
            load: {{{{rate: {RATE}/s, duration: {DURATION_S}s, max_in_flight: 60}}}}
            flows:
              - name: main
                steps:
                  - get: /
                    name: main
            """, ["--max-workers", 3, "--quiet"])
        self.assertEqual(rc, 0, context)
        self.assertIn("admitted as worker 3 of at most 3 (--max-workers); every share is re-planned",
                      err, context)
        workers = report["workers"]
        self.assertEqual(len(workers), 3, context)
        newcomer = [w for w in workers if w["events"]]
        self.assertEqual(len(newcomer), 1, context)
        newcomer = newcomer[0]
        self.assertEqual([e["event"] for e in newcomer["events"]], ["joined"], context)
        self.assertEqual(newcomer["id"], 2, context)
        self.assertEqual(newcomer["state"], "done", context)
        joined_at = newcomer["events"][0]["at_s"]
        self.assertLess(joined_at, JOIN_AFTER_S + 3.0, "joined within a few seconds\n" + context)

        counts = per_second(entries, DURATION_S)
        print(f"\n  nginx per second: {counts}; joined at {joined_at:.1f}s; per worker "
              f"{[w['requests'] for w in workers]}")
        # The cluster's rate stays the scenario's before, across and after the join.
        for second in range(1, DURATION_S - 1):
            self.assertGreaterEqual(counts[second], 0.9 * RATE, f"second {second}\n{context}")
            self.assertLessEqual(counts[second], 1.1 * RATE, f"second {second}\n{context}")
        # Its share: a third of the rate from its join on.
        expected = RATE / 3 * (DURATION_S - joined_at)
        self.assertGreater(newcomer["requests"], 0.8 * expected, context)
        self.assertLess(newcomer["requests"], 1.2 * expected, context)
        # The two others ran at half the rate before and a third after.
        for w in workers:
            if w is not newcomer:
                share = RATE / 2 * joined_at + RATE / 3 * (DURATION_S - joined_at)
                self.assertGreater(w["requests"], 0.85 * share, context)
                self.assertLess(w["requests"], 1.15 * share, context)
        self.assertEqual(report["totals"]["requests"], len(entries), context)
        self.assertEqual(report["totals"]["dropped"], 0, context)
        in_run = {round(float(r["elapsed_s"])): int(r["workers"]) for r in rows}
        self.assertEqual(in_run[1], 2, context)
        self.assertEqual(in_run[int(joined_at) + 2], 3, context)

    def test_closed_model_the_newcomer_takes_users_and_the_total_stays(self):
        users = 6
        rc, out, err, report, rows, entries, context = self.run_with_newcomer(f"""\
            name: e2e-extra-closed
            target: {{url}}
            load: {{{{users: {users}, duration: {DURATION_S}s}}}}
            flows:
              - name: main
                steps:
                  - get: /
                    name: main
                  - think: 50ms
            """, ["--max-workers", 3, "--quiet"])
        self.assertEqual(rc, 0, context)
        workers = report["workers"]
        self.assertEqual(len(workers), 3, context)
        self.assertEqual(sorted(w["users"] for w in workers), [2, 2, 2], context)
        newcomer = [w for w in workers if w["events"]][0]
        joined_at = newcomer["events"][0]["at_s"]
        counts = per_second(entries, DURATION_S)
        print(f"\n  nginx per second: {counts}; joined at {joined_at:.1f}s; per worker "
              f"{[w['requests'] for w in workers]}")
        # Six users, each a request per ~50 ms: the same pace before and after the join.
        before = counts[1:int(joined_at)]
        after = counts[int(joined_at) + 2:DURATION_S - 1]
        self.assertTrue(before and after, context)
        mean_before = sum(before) / len(before)
        mean_after = sum(after) / len(after)
        self.assertLess(abs(mean_after - mean_before), 0.2 * mean_before, context)
        # Active users: the scenario's six throughout (a user handed over ends its iteration).
        for r in rows:
            if 1 <= float(r["elapsed_s"]) <= DURATION_S - 1:
                self.assertLessEqual(int(r["users"]), users, f"{r}\n{context}")
        self.assertGreater(newcomer["requests"], 0.5 * mean_after / 3 * (DURATION_S - joined_at),
                           context)
        self.assertEqual(report["totals"]["requests"], len(entries), context)

    def test_per_worker_rows_are_handed_over_and_none_is_used_twice(self):
        # A per_worker feeder whose rows are in the URL: the newcomer gets a share of the rows
        # the two others have not reached (from the end of their slices), and they stop short
        # of what they gave: nginx's log shows no row twice.
        with open(os.path.join(self.tmp, "ids.csv"), "w") as f:
            f.write("id\n" + "".join(f"row{i}\n" for i in range(3000)))
        rc, out, err, report, rows, entries, context = self.run_with_newcomer(f"""\
            name: e2e-extra-feeder
            target: {{url}}
            load: {{{{rate: 120/s, duration: {DURATION_S}s}}}}
            data:
              ids: {{{{csv: ids.csv, split: per_worker, on_exhausted: stop}}}}
            flows:
              - name: main
                steps:
                  - get: "/?id={{{{{{{{ids.id}}}}}}}}"
                    name: row
            """, ["--max-workers", 3, "--quiet"])
        self.assertEqual(rc, 0, context)
        newcomer = [w for w in report["workers"] if w["events"]]
        self.assertEqual(len(newcomer), 1, context)
        self.assertGreater(newcomer[0]["requests"], 0, context)
        used = collections.Counter(e.uri.split("id=", 1)[1] for e in entries)
        twice = {row: n for row, n in used.items() if n > 1}
        # Its rows come from the ends of the others' slices (1000 rows each).
        ends = [r for r in used if int(r[3:]) % 1000 >= 700]
        print(f"\n  rows used {len(used)} by {len(entries)} requests, {len(ends)} from the ends "
              f"of the slices; used twice: {len(twice)}")
        self.assertEqual(twice, {}, context)
        self.assertGreater(len(ends), 0.5 * newcomer[0]["requests"], context)
        self.assertEqual(report["totals"]["requests"], len(entries), context)

    def test_without_max_workers_a_third_is_refused_in_one_line(self):
        rc, out, err, report, rows, entries, context = self.run_with_newcomer(f"""\
            name: e2e-extra-refused
            target: {{url}}
            load: {{{{rate: 100/s, duration: 7s}}}}
            flows:
              - name: main
                steps:
                  - get: /
                    name: main
            """, ["--quiet"], join_after_s=2.5)
        self.assertEqual(rc, 0, context)
        lines = [line for line in err.splitlines() if "refused" in line]
        self.assertEqual(len(lines), 1, context)
        self.assertRegex(lines[0], r"^worker dialled-in-\d+: dialled in mid-run and was refused: "
                         r"the run already has its 2 workers \(--expect-workers 2; "
                         r"--max-workers admits more\)$", context)
        ran = [w for w in report["workers"] if w["state"] == "done"]
        self.assertEqual(len(ran), 2, context)
        refused = [w for w in report["workers"] if w["state"] == "refused"]
        self.assertEqual(len(refused), 1, context)
        self.assertEqual(refused[0]["requests"], 0, context)
        self.assertEqual(report["totals"]["requests"], len(entries), context)

    def test_max_workers_needs_listen_and_at_least_expect_workers(self):
        path = lib.write_scenario(self.tmp, lib.one_get_scenario("http://127.0.0.1:9/", 1, "1s",
                                                                 "bad-flags"))
        rc, out, err = lib.run_master(["--max-workers", 3, path])
        self.assertEqual(rc, 2, err)
        self.assertIn("--max-workers needs --listen", err)
        rc, out, err = lib.run_master(["--listen", "tcp://127.0.0.1:1", "--expect-workers", 3,
                                       "--max-workers", 2, path])
        self.assertEqual(rc, 2, err)
        self.assertIn("--max-workers: expected at least --expect-workers (3), got 2", err)


if __name__ == "__main__":
    unittest.main(verbosity=2)
