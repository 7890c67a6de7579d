"""End to end for the nghttp2 engine (`http.version: "2"`, the default engine for it): master
loads nginx over h2 (TLS, ALPN) and h2c (prior knowledge) with a flow that reads two gzip bodies
whole (the home page, a JSON list: body_contains, expect.json, a capture), follows a redirect and
checks a header. Checked against nginx's access log: every line HTTP/2.0, the report's totals
equal nginx's count, every body of those two gzip'd with the ratio of their decoded size, bytes_in
covers the bodies nginx sent; with 10 streams per connection nginx saw users / 10 connections; the same
scenario through the HTTP/1.1 engine gives the same totals and checks."""

import collections
import json
import os
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402
from test_http2 import make_certificate  # noqa: E402

# protocol, connection serial number, status, method, uri, body bytes (as sent, gzip), gzip
# ratio (original size / compressed size, two decimals; "-" when not compressed)
LOG_FORMAT = ("$server_protocol $connection $status $request_method $request_uri $body_bytes_sent "
              "$gzip_ratio")
# The bodies gzip'd on the way, as their decoded (original) text.
GZIPPED = {"/": lib.DOCROOT_FILES["index.html"], "/products.json": lib.DOCROOT_FILES["products.json"]}
ITERATIONS = 200

FLOW = {"name": "shop", "steps": [
    # Both bodies come gzip'd (short ones: 120 and 190 bytes); each step reads the whole
    # decoded text.
    {"get": "/", "name": "home",
     "expect": {"status": 200, "body_contains": GZIPPED["/"],
                "header": {"Content-Encoding": "gzip"}}},
    {"get": "/products.json", "name": "products",
     "headers": {"Accept": "application/json"},
     "expect": {"status": 200, "json": {"$.products[0].id": 1},
                "body_contains": GZIPPED["/products.json"],
                "header": {"Content-Encoding": "gzip"}},
     "capture": {"first": {"json": "$.products[0].name"}}},
    {"get": "/old", "name": "moved", "expect": {"status": 200}},
]}


def nginx_h2(cert, key, extra=()):
    return lib.nginx(
        listen={"tls": "ssl http2", "h2c": "http2", "h1": ""},
        server_lines=(f"ssl_certificate {cert};", f"ssl_certificate_key {key};",
                      "gzip on;", "gzip_types application/json;", "gzip_min_length 1;",
                      "location = /old { return 302 /products.json; }",
                      "location = /drop { return 444; }", *extra),
        log_format=LOG_FORMAT)


def log_entries(server):
    lib.wait_access_log_stable(server.access_log)
    with open(server.access_log) as f:
        return [line.split() for line in f if line.strip()]


def scenario(target, ca, users, streams=None, version="2", iterations=ITERATIONS):
    http = {"version": version, "tls": {"ca": ca}, "follow_redirects": True}
    if streams:
        http["h2"] = {"streams_per_connection": streams}
    return {
        "name": "e2e-h2-engine",
        "target": target,
        "load": {"users": users, "duration": "30s", "iterations": iterations},
        "halt": {"on_error": "first"},
        "http": http,
        "flows": [FLOW],
    }


class H2EngineTest(lib.TempDirTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        if not os.access(lib.NGINX, os.X_OK):
            self.skipTest(f"no nginx at {lib.NGINX}")
        self.cert, self.key = make_certificate(self.tmp)

    def run_scenario(self, name, content):
        out_dir = os.path.join(self.tmp, f"out-{name}")
        path = lib.write_scenario(self.tmp, content, name=f"{name}.yaml")
        rc, out, err = lib.run_master(["--out", out_dir, path], timeout=60)
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], "passed", context)
        return report

    def check_h2_run(self, server, target, name, users, streams=None):
        report = self.run_scenario(name, scenario(target, self.cert, users, streams))
        entries = log_entries(server)
        totals = report["totals"]
        where = f"[{name}] totals={totals}"
        # Every request on the wire was HTTP/2, and nginx counted what the report counts: 3
        # steps and a redirect hop per iteration.
        self.assertEqual(sorted({e[0] for e in entries}), ["HTTP/2.0"], where)
        self.assertEqual(len(entries), ITERATIONS * 4, where)
        self.assertEqual(totals["requests"], len(entries), where)
        self.assertEqual(totals["errors"], 0, where)
        self.assertEqual(totals.get("protocols", {}).get("HTTP/2"), totals["requests"], where)
        # gzip on the wire: nginx compressed every body of / and /products.json, and its ratio
        # gives back the decoded size the steps read whole (body_contains).
        for e in entries:
            if e[4] in GZIPPED:
                self.assertNotEqual(e[6], "-", f"{where} not gzip'd: {e}")
                decoded = int(e[5]) * float(e[6])
                self.assertAlmostEqual(decoded, len(GZIPPED[e[4]]), delta=1 + int(e[5]) * 0.005,
                                       msg=f"{where} {e}")
        # The body nginx sent (compressed) is inside the frames counted.
        body_bytes = sum(int(e[5]) for e in entries)
        self.assertGreaterEqual(totals["bytes_in"], body_bytes + 9 * len(entries), where)
        self.assertLess(totals["bytes_in"], body_bytes + 400 * len(entries), where)
        return report, entries

    def test_h2_over_tls_alpn(self):
        with nginx_h2(self.cert, self.key) as server:
            self.check_h2_run(server, server.url_for("tls", "https"), "tls", users=5)

    def test_h2c_with_prior_knowledge(self):
        with nginx_h2(self.cert, self.key) as server:
            self.check_h2_run(server, server.url_for("h2c"), "h2c", users=5)

    def test_ten_streams_per_connection_share_one_connection(self):
        users = 20
        with nginx_h2(self.cert, self.key) as server:
            _, entries = self.check_h2_run(server, server.url_for("tls", "https"), "streams",
                                           users=users, streams=10)
            per_connection = collections.Counter(e[1] for e in entries)
            self.assertEqual(len(per_connection), users // 10, per_connection)

    def test_one_stream_per_connection_is_one_connection_per_user(self):
        users = 6
        with nginx_h2(self.cert, self.key) as server:
            _, entries = self.check_h2_run(server, server.url_for("h2c"), "single", users=users)
            self.assertEqual(len({e[1] for e in entries}), users)

    def test_streams_beyond_the_servers_max_concurrent_streams_wait(self):
        """nginx allows 4 concurrent streams a connection (SETTINGS_MAX_CONCURRENT_STREAMS) and
        refuses a fifth with RST_STREAM REFUSED_STREAM: 10 users on a connection must keep to 4."""
        users = 20
        with nginx_h2(self.cert, self.key, extra=("http2_max_concurrent_streams 4;",)) as server:
            _, entries = self.check_h2_run(server, server.url_for("h2c"), "max-streams",
                                           users=users, streams=10)
            self.assertEqual(len({e[1] for e in entries}), users // 10)

    def test_graceful_goaway_every_50_requests_is_no_error(self):
        """nginx ends each connection after 50 requests with GOAWAY (NO_ERROR): the streams it
        left out go again on a new connection, and nothing is lost or counted twice."""
        with nginx_h2(self.cert, self.key, extra=("keepalive_requests 50;",)) as server:
            _, entries = self.check_h2_run(server, server.url_for("tls", "https"), "goaway",
                                           users=20, streams=10)
            # 800 requests at 50 a connection: nginx opened at least 16.
            self.assertGreaterEqual(len({e[1] for e in entries}), ITERATIONS * 4 // 50)

    def test_streams_left_out_by_goaway_go_again_until_a_connection_takes_them(self):
        """nginx ends each connection after 3 requests with GOAWAY (NO_ERROR, last_stream_id the
        third): of the 10 streams a connection carries, 7 are left out each time, and go to the
        next connection, where most are left out again. Each goes until one takes it: no error,
        every request once in nginx's log (none lost, none twice)."""
        with nginx_h2(self.cert, self.key, extra=("keepalive_requests 3;",)) as server:
            _, entries = self.check_h2_run(server, server.url_for("h2c"), "goaway-3",
                                           users=10, streams=10)
            # 800 requests at 3 a connection.
            self.assertGreaterEqual(len({e[1] for e in entries}), ITERATIONS * 4 // 3)

    def assert_halted_by(self, rc, out, err, out_dir, kind):
        """A run that halted, without a crash, on a first error of `kind`: that error."""
        context = lib.describe(rc, out, err)
        lib.assert_no_crash(self, err, context)
        self.assertNotEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        self.assertEqual(report["outcome"], "halted", context)
        first = report["first_error"]
        self.assertEqual(first.get("error_kind") or first.get("kind"), kind, first)
        return first

    def test_a_stream_reset_by_the_server_halts_with_its_kind_and_code(self):
        """nginx's `return 444` resets the stream over HTTP/2: the first error is stream_reset,
        its detail names the code, and the run halts."""
        with nginx_h2(self.cert, self.key) as server:
            content = scenario(server.url_for("h2c"), self.cert, 2)
            content["flows"] = [{"name": "drop", "steps": [{"get": "/drop", "name": "drop"}]}]
            out_dir = os.path.join(self.tmp, "out-drop")
            path = lib.write_scenario(self.tmp, content, name="drop.yaml")
            rc, out, err = lib.run_master(["--out", out_dir, path], timeout=60)
            first = self.assert_halted_by(rc, out, err, out_dir, "stream_reset")
            self.assertIn("RST_STREAM", json.dumps(first), first)

    def test_a_server_that_never_answers_times_out_and_the_run_ends(self):
        """A server that takes the connections and never sends a byte: the first request to
        pass http.timeout halts the run as a timeout, the other streams in flight are cancelled,
        and the run ends soon after (nothing waits on a stream that will never close)."""
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        held = []

        def accept():
            while True:
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    return

        threading.Thread(target=accept, daemon=True).start()
        try:
            port = listener.getsockname()[1]
            content = scenario(f"http://127.0.0.1:{port}", self.cert, 20, streams=10)
            content["http"]["timeout"] = "1s"
            content["flows"] = [{"name": "get", "steps": [{"get": "/", "name": "home"}]}]
            out_dir = os.path.join(self.tmp, "out-silent")
            path = lib.write_scenario(self.tmp, content, name="silent.yaml")
            started = time.monotonic()
            rc, out, err = lib.run_master(["--out", out_dir, path], timeout=60)
            elapsed = time.monotonic() - started
        finally:
            listener.close()
            for conn in held:
                conn.close()
        self.assert_halted_by(rc, out, err, out_dir, "timeout")
        self.assertLess(elapsed, 15, lib.describe(rc, out, err))

    def test_same_totals_and_checks_as_http1(self):
        with nginx_h2(self.cert, self.key) as server:
            h2 = self.run_scenario("same-h2", scenario(server.url_for("h2c"), self.cert, 4))
            h1 = self.run_scenario("same-h1", scenario(server.url_for("h1"), self.cert, 4,
                                                        version="1.1"))
            entries = log_entries(server)
        protocols = collections.Counter(e[0] for e in entries)
        self.assertEqual(protocols, {"HTTP/2.0": ITERATIONS * 4, "HTTP/1.1": ITERATIONS * 4})
        for key in ("requests", "errors"):
            self.assertEqual(h2["totals"][key], h1["totals"][key], key)
        steps = lambda r: {s["name"]: (s["requests"], s["errors"]) for s in r["steps"]}  # noqa
        self.assertEqual(steps(h2), steps(h1))


if __name__ == "__main__":
    unittest.main()
