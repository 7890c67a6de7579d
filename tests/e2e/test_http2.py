"""End to end over HTTP/2: master loads nginx for 2 s with `http: {version: "2"}`, over TLS (h2
via ALPN, trusting a self-signed certificate given as `tls.ca`) and in clear text (h2c with prior
knowledge). nginx's access log shows HTTP/2.0 for every request, and the report counts every
request as HTTP/2."""

import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

USERS = 4
LOG_FORMAT = "$server_protocol $status $request_method $request_uri"


def make_certificate(directory):
    """A self-signed certificate for 127.0.0.1 and its key: (cert path, key path)."""
    cert = os.path.join(directory, "cert.pem")
    key = os.path.join(directory, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", key, "-out", cert],
        check=True, capture_output=True, timeout=60)
    return cert, key


def nginx_h2(cert, key):
    """The testlib's nginx, serving also h2 over TLS (`.url_for("tls", "https")`) and h2c with
    prior knowledge (`.url_for("h2c")`); its access log has LOG_FORMAT lines."""
    # nginx 1.22 syntax; a plain `http2` listen speaks h2c with prior knowledge only.
    return lib.nginx(listen={"tls": "ssl http2", "h2c": "http2"},
                     server_lines=(f"ssl_certificate {cert};", f"ssl_certificate_key {key};"),
                     log_format=LOG_FORMAT)


def logged_protocols(server):
    """The protocol of every request nginx logged, in order, once no more lines come (nginx
    writes a line just after it sends the response)."""
    lib.wait_access_log_stable(server.access_log)
    with open(server.access_log) as f:
        return [line.split()[0] for line in f if line.strip()]


def scenario(target, ca):
    return {
        "name": "e2e-http2",
        "target": target,
        "load": {"users": USERS, "duration": "2s"},
        "halt": {"on_error": "first"},
        "http": {"version": "2", "tls": {"ca": ca}},
        "flows": [lib.BROWSE_FLOW],
    }


class Http2Test(lib.TempDirTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        if not os.access(lib.NGINX, os.X_OK):
            self.skipTest(f"no nginx at {lib.NGINX}")
        self.cert, self.key = make_certificate(self.tmp)

    def assert_all_http2(self, protocols, where):
        self.assertGreater(len(protocols), 0, f"{where}: nginx logged no request")
        others = sorted({p for p in protocols if p != "HTTP/2.0"})
        self.assertEqual(others, [], f"{where}: {len(protocols)} requests, not all HTTP/2.0")

    def run_master(self, server, target, name):
        out_dir = os.path.join(self.tmp, f"out-{name}")
        path = lib.write_scenario(self.tmp, scenario(target, self.cert), name=f"{name}.yaml")
        rc, out, err = lib.run_master(["--out", out_dir, path], timeout=60)
        context = lib.describe(rc, out, err)
        self.assertEqual(rc, 0, context)
        lib.assert_no_crash(self, err, context)
        self.assert_all_http2(logged_protocols(server), f"[{name}] nginx access log")
        report = lib.load_report(out_dir)
        totals = report["totals"]
        where = f"[{name}] totals={totals}"
        self.assertEqual(report["outcome"], "passed", where)
        self.assertEqual(totals["errors"], 0, where)
        self.assertGreater(totals["requests"], 0, where)
        self.assertEqual(totals.get("protocols", {}).get("HTTP/2"), totals["requests"], where)

    def test_h2_over_tls_with_a_ca_from_the_scenario(self):
        with nginx_h2(self.cert, self.key) as server:
            self.run_master(server, server.url_for("tls", "https"), "h2")

    def test_h2c_with_prior_knowledge(self):
        with nginx_h2(self.cert, self.key) as server:
            self.run_master(server, server.url_for("h2c"), "h2c")

    def test_the_nginx_fixture_speaks_h2_and_h2c(self):
        """The fixture itself, with the curl tool: every logged line is HTTP/2.0."""
        curl = shutil.which("curl")
        if not curl:
            self.skipTest("no curl tool")
        with nginx_h2(self.cert, self.key) as server:
            for args in (["--http2", "--cacert", self.cert, server.url_for("tls", "https") + "/"],
                         ["--http2-prior-knowledge", server.url_for("h2c") + "/products.json"]):
                result = subprocess.run(
                    [curl, "-sS", "-o", os.devnull, "-w", "%{http_version} %{http_code}", *args],
                    capture_output=True, text=True, timeout=30)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, "2 200", args)
            protocols = logged_protocols(server)
            self.assert_all_http2(protocols, "curl tool")
            self.assertEqual(len(protocols), 2)


if __name__ == "__main__":
    unittest.main()
