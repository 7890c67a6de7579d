"""End to end, cluster mode (issue 3): a master driving worker daemons on loopback against a real
nginx. Counts must add up exactly (workers -> totals -> nginx's access log), weights must split
the users, reverse mode must work, and a worker serving one master must answer a second with
Busy without disturbing the first run."""

import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402


def get_scenario(url, users, duration, name="e2e-cluster"):
    return lib.one_get_scenario(url, users, duration, name)


class ClusterTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def assert_counts_match_nginx(self, report, lines, context):
        totals = report["totals"]
        workers = report["workers"]
        self.assertEqual(totals["errors"], 0, context)
        self.assertEqual(sum(w["requests"] for w in workers), totals["requests"],
                         f"sum over workers != totals.requests\n{workers}\n{totals}")
        self.assertEqual(totals["requests"], lines,
                         f"totals.requests != nginx access-log lines ({lines}); "
                         f"cancelled={totals.get('cancelled')}\n{context}")

    def test_three_workers_against_nginx_add_up_to_the_access_log(self):
        with lib.nginx() as server, lib.workers(3) as ws:
            path = lib.write_scenario(self.tmp, get_scenario(server.url, 30, "5s"))
            started = time.monotonic()
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=40)
            elapsed = time.monotonic() - started
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lines = lib.wait_access_log_stable(server.access_log)
            statuses = {e.status for e in server.access_log_entries()}
            addresses = ws.addresses()

        print(f"\n  3 workers, 5 s: {lines} requests in nginx's log, master took {elapsed:.1f}s")
        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        self.assertGreaterEqual(elapsed, 4.5, context)
        self.assertLess(elapsed, 15, context)
        report = lib.load_report(self.out())
        self.assertEqual(report["outcome"], "passed", report)
        self.assertEqual(report["exit_code"], 0, report)
        self.assertIsNone(report["halt"], report)
        self.assertEqual(statuses, {200}, context)

        workers = report["workers"]
        self.assertEqual(len(workers), 3, workers)
        self.assertEqual(sorted(w["address"] for w in workers), sorted(addresses), workers)
        for w in workers:
            self.assertEqual(w["state"], "done", w)
            self.assertGreater(w["requests"], 0, w)
            self.assertEqual(w["errors"], 0, w)
            self.assertEqual(w["users"], 10, w)
        self.assertEqual(sorted(w["id"] for w in workers), [0, 1, 2], workers)
        self.assert_counts_match_nginx(report, lines, context)
        self.assertEqual(report["control_messages_dropped"], 0, report)

    def test_weights_split_users_and_dry_run_leaves_workers_free(self):
        with lib.nginx() as server, lib.workers(3, weights=[1, 1, 2]) as ws:
            path = lib.write_scenario(self.tmp, get_scenario(server.url, 40, "1s",
                                                             name="e2e-weighted"))
            expected = dict(zip(ws.addresses(), (10, 10, 20)))

            # --dry-run: handshake, print the plan with each worker's share, start nothing.
            started = time.monotonic()
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--dry-run", path], timeout=20)
            dry_elapsed = time.monotonic() - started
            dry_context = lib.describe(rc, out, err)
            self.assertEqual(rc, 0, dry_context)
            lib.assert_no_crash(self, err, dry_context)
            self.assertLess(dry_elapsed, 5, dry_context)
            for address, users in expected.items():
                rows = [line for line in out.splitlines() if address in line]
                self.assertEqual(len(rows), 1, f"plan row for {address}\n{dry_context}")
                # "  id   worker   threads   weight   users   first vu   offset ms"
                columns = rows[0].split()
                self.assertEqual(columns[1], address, rows[0])
                self.assertEqual(int(columns[4]), users, f"users of {address}: {rows[0]}")
            self.assertRegex(out, r"\b40 users\b", dry_context)
            self.assertEqual(lib.count_access_log_lines(server.access_log), 0,
                             "the dry run sent requests to the target")

            # Right after the dry run the same workers take a real run (not Busy).
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=30)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lines = lib.wait_access_log_stable(server.access_log)

        self.assertEqual(rc, 0, f"a real run right after --dry-run failed\n{context}")
        self.assertNotIn("busy", err.lower(), context)
        report = lib.load_report(self.out())
        workers = {w["address"]: w for w in report["workers"]}
        self.assertEqual(set(workers), set(expected), report["workers"])
        for address, users in expected.items():
            self.assertEqual(workers[address]["users"], users, workers[address])
            self.assertEqual(workers[address]["state"], "done", workers[address])
            self.assertGreater(workers[address]["requests"], 0, workers[address])
        self.assertEqual(sum(w["users"] for w in workers.values()), 40, workers)
        self.assert_counts_match_nginx(report, lines, context)

    def test_reverse_mode_workers_dial_the_master(self):
        with lib.nginx() as server:
            port = lib.free_port()
            endpoint = f"tcp://{lib.LOOPBACK}:{port}"
            path = lib.write_scenario(self.tmp, get_scenario(server.url, 10, "2s",
                                                             name="e2e-reverse"))
            with lib.dialling_workers(2, endpoint) as ws:
                started = time.monotonic()
                rc, out, err = lib.run_master(
                    ["--listen", endpoint, "--expect-workers", 2, "--connect-timeout", "3s",
                     "--out", self.out(),
                     "--quiet", path], timeout=30)
                elapsed = time.monotonic() - started
                context = lib.describe(rc, out, err) + "\n" + ws.stderr()
                self.assertTrue(all(d.alive() for d in ws.daemons),
                                f"a dialling worker died\n{context}")
            lines = lib.wait_access_log_stable(server.access_log)

        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        self.assertLess(elapsed, 15, context)
        report = lib.load_report(self.out())
        self.assertEqual(report["outcome"], "passed", report)
        workers = report["workers"]
        self.assertEqual(len(workers), 2, workers)
        for w in workers:
            self.assertEqual(w["state"], "done", w)
            self.assertGreater(w["requests"], 0, w)
            self.assertEqual(w["users"], 5, w)
        self.assert_counts_match_nginx(report, lines, context)

    def test_second_master_gets_busy_and_first_run_is_unaffected(self):
        with lib.nginx() as server, lib.workers(1) as ws:
            path = lib.write_scenario(self.tmp, get_scenario(server.url, 5, "4s",
                                                             name="e2e-busy"))
            first_dir = os.path.join(self.tmp, "first")
            os.makedirs(first_dir)
            first = lib.start_master(
                ["--workers", ws.hosts_file, "--out", self.out("out-first"), "--quiet", path],
                first_dir)
            try:
                # Wait until the worker serves the first master.
                deadline = time.monotonic() + 5
                while "serving master" not in ws[0].stderr() and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)
                if first.poll() is not None:
                    self.fail("first master ended early:\n" +
                              lib.describe(*lib.finish_master(first, first_dir, 1)))
                started = time.monotonic()
                # Busy is an answer: it must come long before this handshake deadline.
                rc2, out2, err2 = lib.run_master(
                    ["--workers", ws.hosts_file, "--connect-timeout", "2s",
                     "--out", self.out("out-second"), "--quiet", path], timeout=20)
                second_elapsed = time.monotonic() - started
                rc1, out1, err1 = lib.finish_master(first, first_dir, 20)
            finally:
                if first.poll() is None:
                    first.kill()
                    first.wait()
            lines = lib.wait_access_log_stable(server.access_log)
            context2 = lib.describe(rc2, out2, err2) + "\n" + ws.stderr()
            context1 = lib.describe(rc1, out1, err1) + "\n" + ws.stderr()

        # The first run went on undisturbed.
        with self.subTest("first run unaffected"):
            self.assertEqual(rc1, 0, context1)
            report = lib.load_report(self.out("out-first"))
            self.assertEqual(report["outcome"], "passed", report)
            self.assertGreaterEqual(report["duration_s"], 3.5, report)
            self.assertEqual(report["workers"][0]["state"], "done", report["workers"])
            self.assertEqual(report["control_messages_dropped"], 0, report)
            self.assert_counts_match_nginx(report, lines, context1)

        # The second master: exit 3 at once, naming the worker and saying busy.
        with self.subTest("second master told busy"):
            self.assertEqual(rc2, 3, context2)
            lib.assert_no_crash(self, err2, context2)
            busy_lines = [line for line in err2.splitlines()
                          if ws[0].address in line and "busy" in line.lower()]
            self.assertTrue(busy_lines,
                            f"stderr should name {ws[0].address} and say busy\n{context2}")
            self.assertLess(second_elapsed, 1.5,
                            f"the second master waited for its handshake deadline instead of "
                            f"hearing Busy\n{context2}")
            second_report = os.path.join(self.out("out-second"), "report.json")
            if os.path.exists(second_report):
                self.assertNotEqual(lib.load_report(self.out("out-second"))["exit_code"], 0)


if __name__ == "__main__":
    unittest.main()
