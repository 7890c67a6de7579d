"""End to end, `worker --allow-target` at connect time (issue 10.2): a worker allowed only
127.0.0.1/32 must not send one request to 127.0.0.2, whether a redirect, a templated step host or
a constant absolute step URL points there, on both HTTP engines. A refused connection is the
error kind `target_not_allowed`; under `halt.on_error: first` it halts the run.

The other address is a fault_target on 127.0.0.2 (loopback on Linux): its own log and /count are
the independent count, and they must stay at 0. The redirect comes from a small HTTP server in
this process on 127.0.0.1 that answers every GET with `302 Location: http://127.0.0.2:P/secret`.
"""

import http.server
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

ALLOW = ["--allow-target", "127.0.0.1/32"]
ENGINES = ("beast", "curl")


class Redirector:
    """An HTTP/1.1 server on 127.0.0.1 answering every GET with a 302 to `location`;
    `.requests` counts what it answered."""

    def __init__(self, location):
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with lock:
                    outer.requests += 1
                self.send_response(302)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((lib.LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{lib.LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def scenario(name, target, step_url, engine, follow_redirects=False):
    return (f"name: {name}\n"
            f"target: {target}\n"
            "load:\n  users: 4\n  duration: 3s\n"
            f"http:\n  engine: {engine}\n  timeout: 2s\n"
            f"  follow_redirects: {'true' if follow_redirects else 'false'}\n"
            "flows:\n  - name: f\n    steps:\n"
            f"      - get: {step_url}\n        name: step\n")


class AllowTargetTest(lib.TempDirTestCase, unittest.TestCase):
    def run_cluster(self, ws, text, name):
        path = lib.write_scenario(self.tmp, text, name=f"{name}.yaml")
        out_dir = os.path.join(self.tmp, name)
        started = time.monotonic()
        rc, out, err = lib.run_master(["--workers", ws.hosts_file, "--out", out_dir, "--quiet",
                                       path], timeout=30)
        elapsed = time.monotonic() - started
        context = lib.describe(rc, out, err) + "\n" + ws.stderr()
        lib.assert_no_crash(self, err, context)
        return rc, err, out_dir, elapsed, context

    def assert_halted_not_allowed(self, rc, out_dir, elapsed, context):
        """A run halted by its first error, target_not_allowed, naming 127.0.0.2."""
        self.assertEqual(rc, 1, context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], "halted", report)
        halt = report["halt"]
        self.assertEqual(halt["reason"], "first_error", halt)
        self.assertEqual(halt["error_kind"], "target_not_allowed", halt)
        by_kind = report["totals"]["errors_by_kind"]
        self.assertGreaterEqual(by_kind.get("target_not_allowed", 0), 1, report["totals"])
        self.assertEqual(set(by_kind), {"target_not_allowed"}, report["totals"])
        first = report.get("first_error") or {}
        self.assertIn("127.0.0.2", str(first), report)
        self.assertLess(elapsed, 10, context)
        return report

    def assert_untouched(self, elsewhere, context):
        time.sleep(0.3)
        self.assertEqual(elsewhere.log_entries(), [], f"127.0.0.2 saw requests\n{context}")
        self.assertEqual(elsewhere.count(), 0, f"127.0.0.2 saw requests\n{context}")

    def test_a_redirect_to_an_address_outside_is_refused_at_connect(self):
        with lib.fault_target_at("127.0.0.2") as elsewhere, \
                Redirector(f"{elsewhere.url}/secret") as redirector, \
                lib.workers(1, extra_args=ALLOW) as ws:
            for engine in ENGINES:
                with self.subTest(engine=engine):
                    before = redirector.requests
                    rc, err, out_dir, elapsed, context = self.run_cluster(
                        ws, scenario(f"redirect-{engine}", redirector.url, "/start", engine,
                                     follow_redirects=True), f"redirect-{engine}")
                    self.assert_halted_not_allowed(rc, out_dir, elapsed, context)
                    self.assertGreaterEqual(redirector.requests - before, 1,
                                            f"the redirect was never asked for\n{context}")
                    self.assert_untouched(elsewhere, context)

    def test_a_templated_host_outside_is_refused_at_connect(self):
        with lib.nginx() as server, lib.fault_target_at("127.0.0.2") as elsewhere, \
                lib.workers(1, extra_args=ALLOW) as ws:
            for engine in ENGINES:
                with self.subTest(engine=engine):
                    url = f"http://127.0.0.{{{{random_int(2, 2)}}}}:{elsewhere.port}/ok"
                    rc, err, out_dir, elapsed, context = self.run_cluster(
                        ws, scenario(f"templated-{engine}", server.url, url, engine),
                        f"templated-{engine}")
                    self.assert_halted_not_allowed(rc, out_dir, elapsed, context)
                    self.assert_untouched(elsewhere, context)
                    self.assertNotIn("refused a scenario", ws[0].stderr(),
                                     "a templated host is judged per connection, not at Prepare")

    def test_an_absolute_step_url_outside_is_refused_before_any_request(self):
        with lib.nginx() as server, lib.fault_target_at("127.0.0.2") as elsewhere, \
                lib.workers(1, extra_args=ALLOW) as ws:
            for engine in ENGINES:
                with self.subTest(engine=engine):
                    rc, err, out_dir, elapsed, context = self.run_cluster(
                        ws, scenario(f"absolute-{engine}", server.url,
                                     f"{elsewhere.url}/ok", engine), f"absolute-{engine}")
                    self.assertEqual(rc, 3, context)
                    self.assertIn("--allow-target", err, context)
                    self.assertIn("127.0.0.2", err, context)
                    self.assertEqual(lib.count_access_log_lines(server.access_log), 0, context)
                    self.assert_untouched(elsewhere, context)

    def test_an_allowed_target_still_runs_on_both_engines(self):
        with lib.nginx() as server, lib.workers(1, extra_args=ALLOW) as ws:
            for engine in ENGINES:
                with self.subTest(engine=engine):
                    before = lib.count_access_log_lines(server.access_log)
                    rc, err, out_dir, elapsed, context = self.run_cluster(
                        ws, scenario(f"allowed-{engine}", server.url, "/", engine).replace(
                            "duration: 3s", "duration: 1s"), f"allowed-{engine}")
                    self.assertEqual(rc, 0, context)
                    report = lib.load_report(out_dir)
                    lines = lib.wait_access_log_stable(server.access_log) - before
                    self.assertGreater(report["totals"]["requests"], 0, report["totals"])
                    self.assertEqual(report["totals"]["requests"], lines, context)


if __name__ == "__main__":
    unittest.main()
