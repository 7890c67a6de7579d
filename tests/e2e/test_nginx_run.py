"""End to end: master loads a real nginx for 3 s; the report matches nginx's access log exactly,
with the Beast engine and with the curl engine, and both engines report the same structure."""

import os
import sys
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

USERS = 10

# Step name -> (method, path) as nginx logs it.
STEPS = {
    "home": ("GET", "/"),
    "products": ("GET", "/products.json"),
    "about": ("GET", "/about.html"),
}


def scenario(target, engine=None):
    text = textwrap.dedent(f"""\
        name: e2e-nginx-{engine or 'default'}
        target: {target}
        load:
          users: {USERS}
          duration: 3s
        halt:
          on_error: first
        flows:
          - name: browse
            weight: 3
            steps:
              - get: /
                name: home
                expect: {{status: 200}}
              - get: /products.json
                name: products
                expect: {{status: 200}}
          - name: about
            weight: 1
            steps:
              - get: /about.html
                name: about
        """)
    if engine:
        text += f"http:\n  engine: {engine}\n"
    return text


class NginxRunTest(lib.TempDirTestCase, unittest.TestCase):
    def run_engine(self, engine, extra_args=()):
        """Runs the scenario against a fresh nginx: (report, access-log distribution, lines)."""
        with lib.nginx() as server:
            out_dir = os.path.join(self.tmp, f"out-{engine or 'beast'}")
            path = lib.write_scenario(self.tmp, scenario(server.url, engine),
                                      name=f"nginx-{engine or 'beast'}.yaml")
            rc, out, err = lib.run_master([*extra_args, "--out", out_dir, path], timeout=60)
            context = lib.describe(rc, out, err)
            self.assertEqual(rc, 0, context)
            for marker in lib.CRASH_MARKERS:
                self.assertNotIn(marker, err, context)
            lines = lib.wait_access_log_stable(server.access_log)
            distribution = lib.access_log_distribution(server.access_log)
        report = lib.load_report(out_dir)
        self.check_report(report, lines, distribution, engine or "beast")
        return report

    def check_report(self, report, log_lines, distribution, engine):
        totals = report["totals"]
        where = f"[{engine}] totals={totals}"
        self.assertEqual(report["outcome"], "passed", where)
        self.assertEqual(report["exit_code"], 0, where)
        self.assertIsNone(report.get("halt"), where)
        self.assertIsNone(report.get("first_error"), where)
        self.assertGreater(totals["requests"], 0, where)
        self.assertEqual(totals["errors"], 0, where)
        # Every request the report counts reached nginx, and nginx saw nothing else.
        self.assertEqual(totals["requests"], log_lines,
                         f"{where}: report requests != nginx access-log lines "
                         f"(cancelled={totals.get('cancelled')})")
        self.assertGreater(totals["rps"], 0, where)
        self.assertGreater(totals["bytes_in"], 0, where)
        self.assertGreater(totals["bytes_out"], 0, where)
        self.assertGreaterEqual(report["duration_s"], 2.5, where)
        self.assertLess(report["duration_s"], 15, where)
        self.check_latency(totals["latency_ms"], where)

        steps = {s["name"]: s for s in report["steps"]}
        self.assertEqual(set(steps), set(STEPS), f"[{engine}] steps: {report['steps']}")
        self.assertEqual(sum(s["requests"] for s in report["steps"]), totals["requests"],
                         f"[{engine}] per-step requests do not sum to the total")
        # nginx answered every request 200, and per path exactly as often as the report says.
        statuses = {status for (_, _, status) in distribution}
        self.assertEqual(statuses, {200}, f"[{engine}] nginx statuses: {distribution}")
        for name, (method, path) in STEPS.items():
            step = steps[name]
            self.assertEqual(step["method"].upper(), method, f"[{engine}] {step}")
            self.assertEqual(step["errors"], 0, f"[{engine}] {step}")
            self.assertFalse(any(step.get("errors_by_kind", {}).values()), f"[{engine}] {step}")
            self.assertGreater(step["requests"], 0, f"[{engine}] {step}")
            self.assertEqual(step["requests"], distribution[(method, path, 200)],
                             f"[{engine}] step {name}: report vs nginx access log {distribution}")
            self.check_latency(step["latency_ms"], f"[{engine}] step {name}")
        # Each iteration of "browse" sends home then products; at most one per user is cut short.
        self.assertLessEqual(abs(steps["home"]["requests"] - steps["products"]["requests"]), USERS,
                             f"[{engine}] home vs products")

    def check_latency(self, latency, where):
        keys = ["min", "p50", "p90", "p95", "p99", "p999", "max"]
        for key in keys + ["mean"]:
            self.assertIn(key, latency, where)
            self.assertGreaterEqual(latency[key], 0, f"{where}: latency {latency}")
        values = [latency[k] for k in keys]
        # Histogram percentiles carry 0.1 % error: allow that much disorder.
        for lower, upper in zip(values, values[1:]):
            self.assertLessEqual(lower, upper * 1.001 + 1e-3, f"{where}: latency {latency}")
        self.assertLessEqual(latency["min"], latency["mean"] * 1.001 + 1e-3, where)
        self.assertLessEqual(latency["mean"], latency["max"] * 1.001 + 1e-3, where)

    def test_beast_and_curl_engines_match_nginx_access_log_and_each_other(self):
        beast = self.run_engine(None)
        curl = self.run_engine("curl", extra_args=["--quiet"])

        def structure(report):
            return sorted((s["name"], s["method"].upper()) for s in report["steps"])

        self.assertEqual(structure(beast), structure(curl))
        for report in (beast, curl):
            self.assertEqual(report["totals"]["errors"], 0)
            self.assertGreater(report["totals"]["requests"], 0)
            self.assertEqual(sorted(report["totals"]["latency_ms"]),
                             sorted(beast["totals"]["latency_ms"]))


if __name__ == "__main__":
    unittest.main()
