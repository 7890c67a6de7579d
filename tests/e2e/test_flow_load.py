"""End to end, per-flow load (issue 17): two HTTP flows, each on a load: of its own (one open,
one closed with an iteration limit), on 2 workers against nginx; nginx's access log counts each
flow's requests independently of the report."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

RATE = 100         # the open flow's arrivals per second, cluster-wide
SECONDS = 3
ITERATIONS = 60    # the closed flow's iteration limit, cluster-wide


def scenario(url):
    return f"""
        name: e2e-flow-load
        target: {url}
        flows:
          - name: browse
            load: {{rate: {RATE}/s, duration: {SECONDS}s}}
            steps: [{{get: "/?flow=open", name: open}}]
          - name: batch
            load: {{users: 3, duration: {SECONDS}s, iterations: {ITERATIONS}}}
            steps: [{{get: "/?flow=closed", name: closed}}, {{think: 20ms}}]
        """


class FlowLoadTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def test_two_http_flows_each_on_its_own_load(self):
        with lib.nginx() as server, lib.workers(2) as ws:
            path = lib.write_scenario(self.tmp, scenario(server.url))
            rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--dry-run", path],
                                          timeout=30)
            self.assertEqual(rc, 0, lib.describe(rc, out, err))
            # The plan names each flow's load and each worker's share of it.
            self.assertIn("per-flow load", out)
            self.assertRegex(out, r"g1 flows\[0\]\.load: flow \"browse\": open model")
            self.assertRegex(out, r"g2 flows\[1\]\.load: flow \"batch\": closed model")
            self.assertIn("g1 rate/s", out)
            self.assertIn("g2 users", out)
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=40)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lib.wait_access_log_stable(server.access_log)
            entries = lib.parse_access_log(server.access_log)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        steps = {s["name"]: s for s in report["steps"]}
        open_lines = sum(1 for e in entries if e.uri == "/?flow=open")
        closed_lines = sum(1 for e in entries if e.uri == "/?flow=closed")
        print(f"\n  per-flow load on 2 workers: open {open_lines} requests "
              f"({steps['open']['dropped']} dropped) of {RATE * SECONDS} due, "
              f"closed {closed_lines} of {ITERATIONS} iterations")
        # Totals exact against nginx's log, and per flow.
        self.assertEqual(len(entries), report["totals"]["requests"], context)
        self.assertEqual(open_lines + closed_lines, len(entries), context)
        self.assertEqual(steps["open"]["requests"], open_lines, context)
        self.assertEqual(steps["closed"]["requests"], closed_lines, context)
        # The closed flow's iteration limit is exact; the open flow keeps its schedule.
        self.assertEqual(closed_lines, ITERATIONS, context)
        # Each step's figures follow its own flow's model: the closed step's service time is its
        # latency (from the send) and it has no schedule to lag behind.
        self.assertIsNotNone(steps["open"]["schedule_lag_ms"], steps["open"])
        self.assertIsNone(steps["closed"]["schedule_lag_ms"], steps["closed"])
        self.assertEqual(steps["closed"]["service_ms"], steps["closed"]["latency_ms"], context)
        self.assertGreater(steps["closed"]["service_ms"]["max"], 0, steps["closed"])
        started = steps["open"]["requests"] + steps["open"]["dropped"]
        self.assertLessEqual(abs(started - RATE * SECONDS), 4, context)
        groups = report["load"]["groups"]
        self.assertEqual([(g["path"], g["model"], g["flows"]) for g in groups],
                         [("flows[0].load", "open", ["browse"]),
                          ("flows[1].load", "closed", ["batch"])], groups)
        # Each worker ran its share of both: half the rate, and the iterations of its users
        # (3 users split 2 + 1, iterations 40 + 20).
        per_worker = sorted(w["requests"] for w in report["workers"])
        self.assertEqual(sum(per_worker), len(entries), report["workers"])
        self.assertAlmostEqual(per_worker[0], RATE * SECONDS / 2 + 20, delta=4, msg=per_worker)
        self.assertAlmostEqual(per_worker[1], RATE * SECONDS / 2 + 40, delta=4, msg=per_worker)

    def test_bad_per_flow_load_is_refused_with_its_place(self):
        path = lib.write_scenario(self.tmp, """
            name: t
            target: http://127.0.0.1:9
            load: {users: 1, duration: 1s}
            flows:
              - steps: [{get: /}]
              - load: {rate: 0/s, duration: 1s}
                steps: [{get: /}]
            """)
        rc, out, err = lib.run_master(["--dry-run", path], timeout=20)
        self.assertEqual(rc, 2, lib.describe(rc, out, err))
        self.assertRegex(err, r"scenario\.yaml:6:18: flows\[1\]\.load\.rate: must be greater "
                              r"than 0")
        lib.assert_no_crash(self, err)


if __name__ == "__main__":
    unittest.main()
