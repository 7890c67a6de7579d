"""End to end, what a flow can do (issue 6): captures and templating through a login flow that
the target checks, expectations with their own error kinds, data feeders split across workers,
redirects, overrides from the command line, and every shipped example running for real."""

import glob
import json
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

EXAMPLES = os.path.abspath(os.path.join(os.environ.get("STAMPEDE_SOURCE", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")), "config", "examples"))


class FlowTest(lib.TempDirTestCase, unittest.TestCase):
    def out(self, name="out"):
        return os.path.join(self.tmp, name)

    def test_login_captures_a_token_that_the_target_accepts(self):
        with lib.fault_target() as target:
            rc, out, err, context = lib.run_local(self.tmp, f"""
                name: e2e-login
                target: {target.url}
                load: {{users: 4, duration: 2s}}
                flows:
                  - name: checkout
                    steps:
                      - post: /login
                        name: login
                        json: {{user: "u{{{{vu}}}}", password: secret}}
                        capture:
                          token: {{json: $.token}}
                          session: {{header: X-Session}}
                          number: {{regex: 'tok-(\\d+)-'}}
                      - get: /authorised
                        name: cart
                        query: {{n: "{{{{number}}}}", s: "{{{{session}}}}"}}
                        headers: {{Authorization: "Bearer {{{{token}}}}"}}
                        expect:
                          status: 200
                          json: {{"$.items[0].sku": 42}}
                          header: {{Content-Type: json}}
                          max_latency: 2s
                """, self.out())
            log = target.log_entries()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        steps = {s["name"]: s for s in report["steps"]}
        self.assertGreater(steps["cart"]["requests"], 10, report["steps"])
        self.assertEqual(report["totals"]["errors"], 0, report["totals"])
        carts = [e for e in log if e[3].startswith("/authorised")]
        self.assertEqual(len(carts), steps["cart"]["requests"], context)
        self.assertTrue(all(e[4] == 200 for e in carts), carts[:5])
        # The query carried the regex capture and the header capture of the same login.
        for e in carts[:20]:
            m = re.match(r"/authorised\?n=(\d+)&s=tok-(\d+)-\d+$", e[3])
            self.assertIsNotNone(m, e[3])
            self.assertEqual(m.group(1), m.group(2), e[3])

    def test_each_expectation_and_a_missing_capture_have_their_own_error_kind(self):
        cases = {
            "expect_json": "expect: {json: {'$.items[0].sku': 43}}",
            "expect_header": "expect: {header: {X-Missing: yes}}",
            "expect_body": "expect: {body_contains: nothing-like-this}",
            "expect_latency": "expect: {max_latency: 1ms}",
            "capture_missing": "capture: {gone: {json: $.nope}}",
            "http_401": "expect: {status: 200}",
        }
        with lib.fault_target() as target:
            for kind, clause in cases.items():
                url = "/delay/20" if kind == "expect_latency" else "/authorised"
                auth = "" if kind == "http_401" else \
                    'headers: {Authorization: "Bearer {{token}}"}'
                rc, out, err, context = lib.run_local(self.tmp, f"""
                    name: e2e-{kind}
                    target: {target.url}
                    load: {{users: 1, duration: 5s}}
                    flows:
                      - steps:
                          - post: /login
                            capture: {{token: {{json: $.token}}}}
                          - get: {url}
                            name: checked
                            {auth}
                            {clause}
                    """, self.out(kind), name=f"{kind}.yaml")
                self.assertEqual(rc, 1, f"{kind}: {context}")
                report = lib.load_report(self.out(kind))
                self.assertEqual(report["outcome"], "halted", kind)
                self.assertEqual(report["first_error"]["error_kind"], kind, report["first_error"])
                self.assertEqual(report["first_error"]["step"], "checked", report["first_error"])
                self.assertTrue(report["first_error"]["detail"], report["first_error"])

    def test_per_worker_feeder_uses_every_row_exactly_once(self):
        rows = 1000
        with open(os.path.join(self.tmp, "ids.csv"), "w") as f:
            f.write("id,name\n")
            for i in range(rows):
                f.write(f'{i},"name, {i}"\n')
        with lib.nginx() as server, lib.workers(3) as ws:
            path = lib.write_scenario(self.tmp, f"""
                name: e2e-feeder
                target: {server.url}
                load: {{users: 6, duration: 30s}}
                data:
                  ids: {{csv: ids.csv, split: per_worker, on_exhausted: stop}}
                flows:
                  - steps: [{{get: "/?id={{{{ids.id}}}}", name: row}}]
                """)
            rc, out, err = lib.run_master(
                ["--workers", ws.hosts_file, "--out", self.out(), "--quiet", path], timeout=60)
            context = lib.describe(rc, out, err) + "\n" + ws.stderr()
            lib.wait_access_log_stable(server.access_log)
            uris = [e.uri for e in lib.parse_access_log(server.access_log)]
        self.assertEqual(rc, 0, context)
        ids = sorted(int(u.split("id=", 1)[1]) for u in uris)
        self.assertEqual(ids, list(range(rows)), f"{len(ids)} requests\n{context}")
        report = lib.load_report(self.out())
        self.assertEqual(report["totals"]["requests"], rows)
        self.assertTrue(all(w["requests"] > 0 for w in report["workers"]), report["workers"])
        self.assertLess(report["duration_s"], 25, "the run should end once every row is used")

    def test_feeder_on_exhausted_halt_halts_the_run(self):
        with open(os.path.join(self.tmp, "few.csv"), "w") as f:
            f.write("id\n1\n2\n3\n")
        with lib.nginx() as server:
            rc, out, err, context = lib.run_local(self.tmp, f"""
                name: e2e-feeder-halt
                target: {server.url}
                load: {{users: 1, duration: 10s}}
                data:
                  few: {{csv: few.csv, on_exhausted: halt}}
                flows:
                  - steps: [{{get: "/?id={{{{few.id}}}}"}}]
                """, self.out())
        self.assertEqual(rc, 1, context)
        report = lib.load_report(self.out())
        self.assertEqual(report["halt"]["reason"], "data_exhausted", report["halt"])
        self.assertEqual(report["totals"]["requests"], 3, report["totals"])

    def test_redirects_are_followed_when_asked(self):
        with lib.fault_target() as target:
            rc, out, err, context = lib.run_local(self.tmp, f"""
                name: e2e-redirect
                target: {target.url}
                load: {{users: 1, duration: 1s}}
                http: {{follow_redirects: true}}
                flows:
                  - steps: [{{get: /redirect, expect: {{status: 200, body_contains: ok}}}}]
                """, self.out())
            log = target.log_entries()
        self.assertEqual(rc, 0, context)
        hops = [e[3] for e in log]
        self.assertGreater(hops.count("/ok"), 5, hops[:10])
        self.assertLessEqual(abs(hops.count("/ok") - hops.count("/redirect")), 1, hops[-6:])
        # Both hops are requests on the wire, counted against the step.
        report = lib.load_report(self.out())
        self.assertEqual(report["totals"]["requests"], len(log), report["totals"])

    def test_set_and_env_file_override_the_scenario_and_are_recorded(self):
        with open(os.path.join(self.tmp, "secrets.env"), "w") as f:
            f.write("# test\nexport API_TOKEN='s3cret'\n")
        with lib.fault_target() as target:
            path = lib.write_scenario(self.tmp, f"""
                name: e2e-overrides
                target: http://127.0.0.1:1
                load: {{users: 5, duration: 30s}}
                variables: {{region: eu}}
                flows:
                  - steps:
                      - get: '/ok?region={{{{region}}}}&token={{{{env("API_TOKEN")}}}}'
                """)
            rc, out, err = lib.run_master(
                ["--set", f"target={target.url}", "--set", "load.users=2",
                 "--set", "variables.region=us", "--duration", "1s",
                 "--env-file", os.path.join(self.tmp, "secrets.env"),
                 "--out", self.out(), "--quiet", path], timeout=30)
            context = lib.describe(rc, out, err)
            log = target.log_entries()
        self.assertEqual(rc, 0, context)
        report = lib.load_report(self.out())
        self.assertIn("load.users=2", report["overrides"])
        self.assertIn("variables.region=us", report["overrides"])
        self.assertEqual(report["load"]["users"], 2, report["load"])
        self.assertAlmostEqual(report["duration_s"], 1.0, delta=0.5)
        self.assertTrue(log and all(e[3] == "/ok?region=us&token=s3cret" for e in log), log[:3])
        # The secret is not written into the report.
        with open(os.path.join(self.out(), "report.json")) as f:
            self.assertNotIn("s3cret", f.read())

    def test_bad_overrides_and_env_files_are_one_line_errors(self):
        path = lib.write_scenario(self.tmp, """
            name: e2e-bad-overrides
            target: http://127.0.0.1:1
            load: {users: 1, duration: 1s}
            flows: [{steps: [{get: /}]}]
            """)
        with open(os.path.join(self.tmp, "bad.env"), "w") as f:
            f.write("GOOD=1\nthis line is wrong\n")
        for args, needle in ((["--set", "load.users=many"], "load.users"),
                             (["--set", "load.nope=1"], "load.nope"),
                             (["--set", "novalue"], "--set"),
                             (["--env-file", os.path.join(self.tmp, "bad.env")], "bad.env:2")):
            rc, out, err = lib.run_master([*args, path], timeout=30)
            context = lib.describe(rc, out, err)
            self.assertEqual(rc, 2, context)
            lines = err.strip().splitlines()
            self.assertEqual(len(lines), 1, context)
            self.assertIn(needle, lines[0], context)
            lib.assert_no_crash(self, err, context)

    def test_every_example_runs_for_two_seconds(self):
        examples = sorted(glob.glob(os.path.join(EXAMPLES, "*.yaml")))
        self.assertGreaterEqual(len(examples), 4, examples)
        with lib.nginx() as server, lib.fault_target() as target:
            for example in examples:
                with open(example) as f:
                    header = f.read(2000)
                expected = int((re.search(r"#\s*expect-exit:\s*(\d+)", header) or
                                re.match(r"()", "0")).group(1) or 0)
                # The examples name the demo's ports: nginx on 18080, the fault target on 18081.
                wants_fault = re.search(r"^target:.*:18081", header, re.M) is not None
                url = target.url if wants_fault else server.url
                out_dir = self.out(os.path.basename(example))
                rc, out, err = lib.run_master(
                    ["--set", f"target={url}", "--duration", "2s", "--out", out_dir, "--quiet",
                     example], timeout=60, cwd=EXAMPLES)
                context = f"{example}\n" + lib.describe(rc, out, err)
                self.assertEqual(rc, expected, context)
                lib.assert_no_crash(self, err, context)
                report = lib.load_report(out_dir)
                self.assertGreater(report["totals"]["requests"], 0, context)
                print(f"\n  {os.path.basename(example)}: exit {rc}, "
                      f"{report['totals']['requests']} requests")


if __name__ == "__main__":
    unittest.main(verbosity=2)
