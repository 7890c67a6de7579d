"""End to end over HTTP/2: master loads nginx for 2 s with `http: {version: "2"}`, over TLS (h2
via ALPN, trusting a self-signed certificate given as `tls.ca`) and in clear text (h2c with prior
knowledge). nginx's access log shows HTTP/2.0 for every request, and the report counts every
request as HTTP/2."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
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


def nginx_h2_config(prefix, ports, cert, key):
    """nginx.conf for h2 over TLS (`ports["tls"]`), h2c with prior knowledge (`ports["h2c"]`) and
    an HTTP/1.1 port only for the readiness probe (`ports["ready"]`, not logged)."""
    lines = []
    if os.geteuid() == 0:
        lines.append("user root;")  # else the workers switch to www-data, who cannot read prefix
    lines += [
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events { worker_connections 4096; }",
        "http {",
        "  types { text/html html; application/json json; text/plain txt; }",
        "  default_type application/octet-stream;",
        f"  log_format protocol '{LOG_FORMAT}';",
        "  keepalive_requests 1000000;",
        f"  client_body_temp_path {prefix}/tmp/body;",
        f"  proxy_temp_path {prefix}/tmp/proxy;",
    ]
    for module, directive in (("http_fastcgi_module", "fastcgi_temp_path"),
                              ("http_uwsgi_module", "uwsgi_temp_path"),
                              ("http_scgi_module", "scgi_temp_path")):
        if lib._nginx_has_module(module):
            lines.append(f"  {directive} {prefix}/tmp/{directive.split('_')[0]};")
    lines += [
        "  server {",
        # nginx 1.22 syntax; a plain `http2` listen speaks h2c with prior knowledge only.
        f"    listen {lib.LOOPBACK}:{ports['tls']} ssl http2 backlog=4096;",
        f"    listen {lib.LOOPBACK}:{ports['h2c']} http2 backlog=4096;",
        f"    ssl_certificate {cert};",
        f"    ssl_certificate_key {key};",
        f"    root {prefix}/html;",
        f"    access_log {prefix}/access.log protocol;",
        "  }",
        "  server {",
        f"    listen {lib.LOOPBACK}:{ports['ready']};",
        "    access_log off;",
        "    location = /__ready { return 204; }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


class NginxH2:
    """A running nginx: `.tls_url`, `.h2c_url`, `.access_log`."""

    def __init__(self, prefix, ports):
        self.prefix = prefix
        self.tls_url = f"https://{lib.LOOPBACK}:{ports['tls']}"
        self.h2c_url = f"http://{lib.LOOPBACK}:{ports['h2c']}"
        self.access_log = os.path.join(prefix, "access.log")

    def protocols(self):
        """The protocol of every request nginx logged, in order."""
        if not os.path.exists(self.access_log):
            return []
        with open(self.access_log) as f:
            return [line.split()[0] for line in f if line.strip()]


@contextlib.contextmanager
def nginx_h2(cert, key, attempts=5, startup_timeout=10.0):
    """Start nginx on free 127.0.0.1 ports with its own prefix and config; always stop it."""
    prefix = tempfile.mkdtemp(prefix="stampede-nginx-h2-")
    proc = None
    try:
        os.makedirs(os.path.join(prefix, "tmp"))
        for name, text in lib.DOCROOT_FILES.items():
            path = os.path.join(prefix, "html", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        last_error = ""
        for _ in range(attempts):
            ports = {"tls": lib.free_port(), "h2c": lib.free_port(), "ready": lib.free_port()}
            if len(set(ports.values())) != 3:
                continue
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(nginx_h2_config(prefix, ports, cert, key))
            with open(os.path.join(prefix, "nginx.stderr"), "w") as err:
                proc = subprocess.Popen(
                    [lib.NGINX, "-p", prefix + "/", "-e", os.path.join(prefix, "error.log"),
                     "-c", conf, "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
            if lib._wait_http_ready(proc, ports["ready"], startup_timeout):
                break
            last_error = lib._read_tail(os.path.join(prefix, "error.log")) + lib._read_tail(
                os.path.join(prefix, "nginx.stderr"))
            lib._stop_process(proc)
            proc = None
            if "Address already in use" not in last_error:
                break
        if proc is None:
            raise AssertionError(f"nginx did not start:\n{last_error}")
        yield NginxH2(prefix, ports)
    finally:
        if proc is not None:
            lib._stop_process(proc, signal.SIGTERM)
        if os.environ.get("STAMPEDE_KEEP_TMP"):
            print(f"kept nginx prefix {prefix}")
        else:
            shutil.rmtree(prefix, ignore_errors=True)


def scenario(target, ca):
    return textwrap.dedent(f"""\
        name: e2e-http2
        target: {target}
        load:
          users: {USERS}
          duration: 2s
        halt:
          on_error: first
        http:
          version: "2"
          tls: {{ca: {ca}}}
        flows:
          - name: browse
            steps:
              - get: /
                name: home
                expect: {{status: 200}}
              - get: /products.json
                name: products
                expect: {{status: 200}}
        """)


class Http2Test(lib.TempDirTestCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        if not os.access(lib.NGINX, os.X_OK):
            self.skipTest(f"no nginx at {lib.NGINX}")
        self.cert, self.key = make_certificate(self.tmp)

    def wait_log_stable(self, server, timeout=5.0):
        """nginx writes a line just after it sends the response: wait until no more come."""
        deadline = time.monotonic() + timeout
        lines = server.protocols()
        while time.monotonic() < deadline:
            time.sleep(0.3)
            again = server.protocols()
            if again == lines:
                break
            lines = again
        return lines

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
        for marker in lib.CRASH_MARKERS:
            self.assertNotIn(marker, err, context)
        protocols = self.wait_log_stable(server)
        self.assert_all_http2(protocols, f"[{name}] nginx access log")
        report = lib.load_report(out_dir)
        totals = report["totals"]
        where = f"[{name}] totals={totals}"
        self.assertEqual(report["outcome"], "passed", where)
        self.assertEqual(totals["errors"], 0, where)
        self.assertGreater(totals["requests"], 0, where)
        self.assertEqual(totals.get("protocols", {}).get("HTTP/2"), totals["requests"], where)

    def test_h2_over_tls_with_a_ca_from_the_scenario(self):
        with nginx_h2(self.cert, self.key) as server:
            self.run_master(server, server.tls_url, "h2")

    def test_h2c_with_prior_knowledge(self):
        with nginx_h2(self.cert, self.key) as server:
            self.run_master(server, server.h2c_url, "h2c")

    def test_the_nginx_fixture_speaks_h2_and_h2c(self):
        """The fixture itself, with the curl tool: every logged line is HTTP/2.0."""
        curl = shutil.which("curl")
        if not curl:
            self.skipTest("no curl tool")
        with nginx_h2(self.cert, self.key) as server:
            for args in (["--http2", "--cacert", self.cert, server.tls_url + "/"],
                         ["--http2-prior-knowledge", server.h2c_url + "/products.json"]):
                result = subprocess.run(
                    [curl, "-sS", "-o", os.devnull, "-w", "%{http_version} %{http_code}", *args],
                    capture_output=True, text=True, timeout=30)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertEqual(result.stdout, "2 200", args)
            self.assert_all_http2(self.wait_log_stable(server), "curl tool")
            self.assertEqual(len(server.protocols()), 2)


if __name__ == "__main__":
    unittest.main()
