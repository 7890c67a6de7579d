"""Helpers for Stampede's end-to-end tests: real processes on 127.0.0.1 only (stdlib only).

Binaries come from $STAMPEDE_BIN (default /work/main/build/bin), the source tree from
$STAMPEDE_SOURCE (default: two levels above this file). Every process started here is stopped
by the context manager that started it, also when the test fails or raises.
"""

import collections
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import time

SOURCE_DIR = os.environ.get(
    "STAMPEDE_SOURCE", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN_DIR = os.environ.get("STAMPEDE_BIN", "/work/main/build/bin")
NGINX = os.environ.get("STAMPEDE_NGINX", "/usr/sbin/nginx")
LOOPBACK = "127.0.0.1"

# Stderr text that means a crash or an unhandled exception rather than a clean error message.
CRASH_MARKERS = ("terminate called", "Traceback", "what():", "Segmentation fault",
                 "Aborted", "AddressSanitizer")


def binary(name):
    """Absolute path of a Stampede binary; fails loudly if it was not built."""
    path = os.path.abspath(os.path.join(BIN_DIR, name))
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{name} not found or not executable at {path} "
                             f"(build first, or set STAMPEDE_BIN)")
    return path


def free_port():
    """A port that was free a moment ago on 127.0.0.1 (the caller retries if it is taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=5.0):
    """(status, body text) of one GET to 127.0.0.1:port."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _stop_process(proc, sig=signal.SIGTERM, timeout=10.0):
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=timeout)


# --------------------------------------------------------------------------------------------
# nginx

DOCROOT_FILES = {
    "index.html": "<!doctype html>\n<html><head><title>Stampede test</title></head>"
                  "<body><h1>Stampede test target</h1></body></html>\n",
    "about.html": "<!doctype html>\n<html><body><p>about</p></body></html>\n",
    "products.json": json.dumps({"products": [
        {"id": 1, "sku": 42, "name": "kettle", "price": 19.5},
        {"id": 2, "sku": 43, "name": "teapot", "price": 24.0},
        {"id": 3, "sku": 44, "name": "mug", "price": 6.25},
    ]}) + "\n",
    "health.txt": "ok\n",
}

# A flow over DOCROOT_FILES for scenarios given as dicts (see `write_scenario`): the home page,
# then the product list, each expecting 200.
BROWSE_FLOW = {"name": "browse", "steps": [
    {"get": "/", "name": "home", "expect": {"status": 200}},
    {"get": "/products.json", "name": "products", "expect": {"status": 200}},
]}

# One line per request: `<unix time.ms> <status> <method> <uri> <bytes sent> <request time>`.
ACCESS_LOG_FORMAT = "$msec $status $request_method $request_uri $body_bytes_sent $request_time"


def _nginx_has_module(module):
    try:
        out = subprocess.run([NGINX, "-V"], capture_output=True, text=True, timeout=10)
    except OSError:
        return False
    return f"--without-{module}" not in (out.stdout + out.stderr)


def nginx_config(prefix, port, listen=(), server_lines=(), log_format=ACCESS_LOG_FORMAT):
    """The nginx.conf text of a self-contained loopback instance under `prefix`.

    `listen` adds (port, parameters) listens to the server, e.g. (8443, "ssl http2"); the server
    also gets the `server_lines` directives; the access log is written in `log_format`.
    """
    lines = []
    if os.geteuid() == 0:
        # As root the workers would switch to the compiled-in user (www-data): keep them as root.
        lines.append("user root;")
    lines += [
        "worker_processes 1;",
        f"pid {prefix}/nginx.pid;",
        f"error_log {prefix}/error.log warn;",
        "events { worker_connections 4096; }",
        "http {",
        "  types { text/html html; application/json json; text/plain txt; }",
        "  default_type application/octet-stream;",
        f"  log_format stampede '{log_format}';",
        f"  access_log {prefix}/access.log stampede;",
        "  keepalive_requests 1000000;",
        "  keepalive_timeout 75s;",
        f"  client_body_temp_path {prefix}/tmp/body;",
        f"  proxy_temp_path {prefix}/tmp/proxy;",
    ]
    for module, directive in (("http_fastcgi_module", "fastcgi_temp_path"),
                              ("http_uwsgi_module", "uwsgi_temp_path"),
                              ("http_scgi_module", "scgi_temp_path")):
        if _nginx_has_module(module):
            lines.append(f"  {directive} {prefix}/tmp/{directive.split('_')[0]};")
    lines += [
        "  server {",
        f"    listen {LOOPBACK}:{port} backlog=4096;",
        *(f"    listen {LOOPBACK}:{extra} {parameters} backlog=4096;"
          for extra, parameters in listen),
        "    server_name localhost;",
        f"    root {prefix}/html;",
        "    index index.html;",
        *(f"    {line}" for line in server_lines),
        "    location = /__ready { access_log off; return 204; }",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


class Nginx:
    """A running nginx: `.port`, `.url`, `.access_log`, `.error_log`, `.prefix`; `.ports` the
    extra listens by name (see `nginx(listen=...)`)."""

    def __init__(self, prefix, port, proc, ports=None):
        self.prefix = prefix
        self.port = port
        self.proc = proc
        self.ports = dict(ports or {})
        self.url = f"http://{LOOPBACK}:{port}"
        self.access_log = os.path.join(prefix, "access.log")
        self.error_log = os.path.join(prefix, "error.log")

    def url_for(self, name, scheme="http"):
        """The URL of the extra listen `name`."""
        return f"{scheme}://{LOOPBACK}:{self.ports[name]}"

    def access_log_lines(self):
        return count_access_log_lines(self.access_log)

    def access_log_entries(self):
        return parse_access_log(self.access_log)


@contextlib.contextmanager
def nginx(files=None, attempts=5, startup_timeout=10.0, listen=None, server_lines=(),
          log_format=ACCESS_LOG_FORMAT):
    """Start nginx on a free 127.0.0.1 port with its own prefix; always stop it.

    `files` adds or replaces docroot files ({relative path: text}). `listen` ({name: listen
    parameters}, e.g. {"tls": "ssl http2"}) adds a listen on another free port per name, found
    in `.ports[name]`; `server_lines` and `log_format` go to `nginx_config`.
    """
    prefix = tempfile.mkdtemp(prefix="stampede-nginx-")
    proc = None
    try:
        docroot = os.path.join(prefix, "html")
        os.makedirs(os.path.join(prefix, "tmp"))
        for name, text in {**DOCROOT_FILES, **(files or {})}.items():
            path = os.path.join(docroot, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)

        last_error = ""
        for _ in range(attempts):
            port = free_port()
            ports = {name: free_port() for name in (listen or {})}
            if len({port, *ports.values()}) != 1 + len(ports):
                continue
            conf = os.path.join(prefix, "nginx.conf")
            with open(conf, "w") as f:
                f.write(nginx_config(prefix, port,
                                     [(ports[name], listen[name]) for name in ports],
                                     server_lines, log_format))
            with open(os.path.join(prefix, "nginx.stderr"), "w") as err:
                proc = subprocess.Popen(
                    [NGINX, "-p", prefix + "/", "-e", os.path.join(prefix, "error.log"),
                     "-c", conf, "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
            if _wait_http_ready(proc, port, startup_timeout):
                break
            last_error = _read_tail(os.path.join(prefix, "error.log")) + _read_tail(
                os.path.join(prefix, "nginx.stderr"))
            _stop_process(proc)
            proc = None
            if "Address already in use" not in last_error:
                break
        if proc is None:
            raise AssertionError(f"nginx did not start:\n{last_error}")
        yield Nginx(prefix, port, proc, ports)
    finally:
        if proc is not None:
            _stop_process(proc)
        if os.environ.get("STAMPEDE_KEEP_TMP"):
            print(f"kept nginx prefix {prefix}")
        else:
            shutil.rmtree(prefix, ignore_errors=True)


def _wait_http_ready(proc, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            status, _ = http_get(port, "/__ready", timeout=1.0)
            if status == 204:
                return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


def _read_tail(path, limit=4000):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-limit:]
    except OSError:
        return ""


def count_access_log_lines(path):
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


def wait_access_log_stable(path, settle=0.3, timeout=5.0):
    """Line count once it stops growing: nginx writes the line just after sending the response."""
    deadline = time.monotonic() + timeout
    count = count_access_log_lines(path)
    while time.monotonic() < deadline:
        time.sleep(settle)
        again = count_access_log_lines(path)
        if again == count:
            return count
        count = again
    return count


AccessLogEntry = collections.namedtuple("AccessLogEntry",
                                        "time status method uri bytes_sent request_time")


def parse_access_log(path):
    entries = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            entries.append(AccessLogEntry(float(parts[0]), int(parts[1]), parts[2], parts[3],
                                          int(parts[4]), float(parts[5])))
    return entries


def access_log_distribution(path):
    """Counter of (method, path without query, status) over the access log."""
    return collections.Counter(
        (e.method, e.uri.split("?", 1)[0], e.status) for e in parse_access_log(path))


# --------------------------------------------------------------------------------------------
# fault_target

class FaultTarget:
    """A running fault_target: `.host`, `.port`, `.url`, `.log`; `.count()` asks /count."""

    def __init__(self, port, log, proc, host=LOOPBACK):
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self.log = log
        self.proc = proc

    def count(self):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
        try:
            conn.request("GET", "/count")
            response = conn.getresponse()
            body = response.read().decode("utf-8", "replace")
        finally:
            conn.close()
        if response.status != 200:
            raise AssertionError(f"/count answered {response.status}: {body!r}")
        return int(body.strip())

    def log_entries(self):
        """[(monotonic_ms, wall_ms, method, target, status)] with status an int or None."""
        return [entry[:5] for entry in self.log_entries_ns()]

    def log_entries_ns(self):
        """[(monotonic_ms, wall_ms, method, target, status, received_ns, answered_ns)]: the
        last two on the steady clock (CLOCK_MONOTONIC) the master and workers stamp with."""
        entries = []
        with open(self.log) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 7:
                    status = None if parts[4] == "-" else int(parts[4])
                    entries.append((int(parts[0]), int(parts[1]), parts[2], parts[3], status,
                                    int(parts[5]), int(parts[6])))
        return entries


@contextlib.contextmanager
def fault_target(startup_timeout=10.0, host=LOOPBACK):
    """Start tests/target/fault_target on a free port of `host` (127.0.0.0/8 only, default
    127.0.0.1); always stop it."""
    if not host.startswith("127."):
        raise AssertionError(f"fault_target: loopback addresses only, got {host}")
    workdir = tempfile.mkdtemp(prefix="stampede-fault-")
    proc = None
    try:
        port_file = os.path.join(workdir, "port")
        log = os.path.join(workdir, "requests.log")
        with open(os.path.join(workdir, "stderr"), "w") as err:
            proc = subprocess.Popen(
                [binary("fault_target"), "--host", host, "--port", "0", "--log", log,
                 "--port-file", port_file],
                stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        deadline = time.monotonic() + startup_timeout
        while not os.path.exists(port_file) or os.path.getsize(port_file) == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"fault_target on {host} did not start:\n" +
                                     _read_tail(os.path.join(workdir, "stderr")))
            time.sleep(0.02)
        with open(port_file) as f:
            port = int(f.read().strip())
        yield FaultTarget(port, log, proc, host)
    finally:
        if proc is not None:
            rc = _stop_process(proc)
            if rc not in (0, -signal.SIGKILL):
                print(f"fault_target exited with {rc}:\n" +
                      _read_tail(os.path.join(workdir, "stderr")))
        if os.environ.get("STAMPEDE_KEEP_TMP"):
            print(f"kept fault_target dir {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# master, scenarios, reports

def run_master(args, timeout=60.0, cwd=None):
    """Run `master ARGS...` to completion: (exit code, stdout, stderr).

    On timeout the master gets SIGINT, then SIGKILL, and the test fails with its output.
    """
    proc = subprocess.Popen([binary("master")] + [str(a) for a in args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace", cwd=cwd,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise AssertionError(f"master {args} did not finish within {timeout}s\n"
                             f"--- stdout\n{out[-4000:]}\n--- stderr\n{err[-4000:]}")
    return proc.returncode, out, err


def start_master(args, workdir):
    """Start `master ARGS...` in the background, output to files in workdir: the Popen.

    The caller waits for it (see `finish_master`) and may signal it in between.
    """
    out = open(os.path.join(workdir, "master.stdout"), "w")
    err = open(os.path.join(workdir, "master.stderr"), "w")
    try:
        return subprocess.Popen([binary("master")] + [str(a) for a in args],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
    finally:
        out.close()
        err.close()


def finish_master(proc, workdir, timeout):
    """Wait up to `timeout` s for a master from `start_master`: (exit code or None, out, err).

    None means it did not exit in time; it has then been killed.
    """
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop_process(proc, signal.SIGKILL)
        rc = None
    return (rc, _read_tail(os.path.join(workdir, "master.stdout"), 20000),
            _read_tail(os.path.join(workdir, "master.stderr"), 20000))


def write_scenario(directory, content, name="scenario.yaml"):
    """Write a scenario into `directory` and return its path.

    `content` is YAML text (dedented) or a dict (written as JSON, which is valid YAML).
    """
    path = os.path.join(directory, name)
    if isinstance(content, str):
        text = textwrap.dedent(content).lstrip("\n")
    else:
        text = json.dumps(content, indent=2) + "\n"
    with open(path, "w") as f:
        f.write(text)
    return path


def load_report(out_dir):
    path = os.path.join(out_dir, "report.json")
    if not os.path.exists(path):
        listing = sorted(os.listdir(out_dir)) if os.path.isdir(out_dir) else "no such directory"
        raise AssertionError(f"no report.json in {out_dir}: {listing}")
    with open(path) as f:
        return json.load(f)


def steps_by_method(report):
    """report.json's steps by their method (PUBLISH, SUBSCRIBE, GET, ...): one step each."""
    return {s["method"]: s for s in report["steps"]}


def assert_halted(testcase, report, exit_code, reason):
    """A report of a run halted for `reason`: its exit code and outcome, and halt figures that
    hang together (assert_halt_figures). Returns report["halt"]."""
    testcase.assertEqual(report["exit_code"], exit_code, report)
    testcase.assertEqual(report["outcome"], "halted", report)
    halt = report["halt"]
    testcase.assertIsInstance(halt, dict, report)
    testcase.assertEqual(halt["reason"], reason, halt)
    assert_halt_figures(testcase, report)
    return halt


ERROR_HALTS = ("first_error", "data_exhausted")


def assert_halt_figures(testcase, report):
    """The sends counted after the first error: for a halt on an error, the cluster figure is
    the sum of every worker's, and each worker that counted has stop_ms beside it; for any other
    halt there is no error to count from and the figures are null."""
    halt = report["halt"]
    workers = report["workers"]
    counted = [w for w in workers if w["requests_sent_after_first_error"] is not None]
    if halt["reason"] in ERROR_HALTS:
        total = halt["requests_sent_after_first_error"]
        testcase.assertIsInstance(total, int, halt)
        testcase.assertGreaterEqual(total, 0, halt)
        testcase.assertEqual(sum(w["requests_sent_after_first_error"] for w in counted), total,
                             workers)
        testcase.assertIsInstance(halt["clock_error_ms"], (int, float), halt)
        testcase.assertGreaterEqual(halt["clock_error_ms"], 0, halt)
        for w in counted:
            if w["requests"] > 0:
                testcase.assertIsInstance(w["stop_ms"], (int, float), w)
    else:
        testcase.assertIsNone(halt["requests_sent_after_first_error"], halt)
        testcase.assertIsNone(halt["clock_error_ms"], halt)
        testcase.assertEqual(counted, [], workers)

def one_get_scenario(url, users, duration, name, path="/", step="home", flow=None, halt=None):
    """The common scenario text: closed model, one flow (named `flow`, default `step`) with one
    GET of `path` named `step`; `halt` is an optional dict written under `halt:`."""
    lines = [f"name: {name}", f"target: {url}", "load:", f"  users: {users}",
             f"  duration: {duration}"]
    if halt:
        lines += ["halt:"] + [f"  {key}: {value}" for key, value in halt.items()]
    lines += ["flows:", f"  - name: {flow or step}", "    steps:", f"      - get: {path}",
              f"        name: {step}"]
    return "\n".join(lines) + "\n"


def run_local(directory, scenario_text, out_dir, args=(), timeout=30, name="scenario.yaml"):
    """Write `scenario_text` into `directory` and run the master on it alone
    (`master ARGS --out OUT_DIR --quiet PATH`): (exit code, stdout, stderr, context)."""
    path = write_scenario(directory, scenario_text, name=name)
    rc, out, err = run_master([*args, "--out", out_dir, "--quiet", path], timeout=timeout)
    return rc, out, err, describe(rc, out, err)


def run_master_and_act(args, workdir, after_s, action, timeout, what="the action"):
    """Start the master (`start_master`), sleep `after_s`, call `action()` (failing if the master
    already ended), then wait up to `timeout` s for it to exit; it is killed if still running.

    Returns (exit code or None, stdout, stderr, what `action` returned, monotonic end time).
    """
    proc = start_master(args, workdir)
    try:
        time.sleep(after_s)
        if proc.poll() is not None:
            raise AssertionError(f"master ended before {what}:\n" +
                                 describe(*finish_master(proc, workdir, 1)))
        result = action()
        rc, out, err = finish_master(proc, workdir, timeout)
        return rc, out, err, result, time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def headers_as_dict(headers):
    """Report headers ({name: value}, or a list of pairs) as {lowercase name: value}."""
    if isinstance(headers, dict):
        return {str(k).lower(): v for k, v in headers.items()}
    result = {}
    for item in headers or []:
        if isinstance(item, dict):
            name = item.get("name", item.get("key"))
            value = item.get("value")
        else:
            name, value = item[0], item[1]
        result[str(name).lower()] = value
    return result


def interrupt_master(test, proc, workdir, timeout):
    """SIGINT to a master from `start_master` that must still be running (the test fails if it
    has already ended): (exit code or None, stdout, stderr, seconds from the signal to its exit).
    """
    if proc.poll() is not None:
        test.fail("master ended before it was interrupted:\n" +
                  describe(*finish_master(proc, workdir, 1)))
    signalled = time.monotonic()
    proc.send_signal(signal.SIGINT)
    rc, out, err = finish_master(proc, workdir, timeout)
    return rc, out, err, time.monotonic() - signalled


def describe(rc, out, err):
    """Context for an assertion message."""
    return f"exit code {rc}\n--- stdout (tail)\n{out[-3000:]}\n--- stderr (tail)\n{err[-3000:]}"


class TempDirTestCase:
    """Mixin for unittest.TestCase: self.tmp is a fresh directory removed after the test."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="stampede-e2e-")
        if os.environ.get("STAMPEDE_KEEP_TMP"):
            print(f"kept test dir {self.tmp}")
        else:
            self.addCleanup(shutil.rmtree, self.tmp, True)


# --------------------------------------------------------------------------------------------
# worker daemons (cluster mode)

class WorkerDaemon:
    """One running worker daemon: `.proc`, `.port` (None when it dials a master), `.address`
    ("127.0.0.1:PORT"), `.stderr_path`; `.stderr()` reads what it logged."""

    def __init__(self, proc, port, stderr_path):
        self.proc = proc
        self.port = port
        self.address = f"{LOOPBACK}:{port}" if port is not None else None
        self.stderr_path = stderr_path

    def stderr(self):
        return _read_tail(self.stderr_path, 20000)

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Send `sig` (default SIGKILL) to this worker; returns time.monotonic() of the send."""
        sent = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return sent


class WorkerSet:
    """Worker daemons started by `workers()`: `.daemons`, `.hosts_file`, `.dir`; indexable."""

    def __init__(self, daemons, hosts_file, directory):
        self.daemons = daemons
        self.hosts_file = hosts_file
        self.dir = directory

    def __getitem__(self, i):
        return self.daemons[i]

    def __len__(self):
        return len(self.daemons)

    def addresses(self):
        return [d.address for d in self.daemons]

    def stderr(self):
        """Every worker's log, labelled, for assertion messages."""
        return "\n".join(f"--- worker {i} ({d.address}) rc={d.proc.poll()}\n{d.stderr()[-2000:]}"
                         for i, d in enumerate(self.daemons))

    def write_hosts(self, lines, name="hosts.txt"):
        """Write another hosts file (list of lines) next to the default one: its path."""
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path


def _wait_listening(proc, port, stderr_path, timeout, quiet):
    """True once the worker logs that it listens (or, with --quiet, accepts TCP on its port)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if not quiet:
            if "listening on" in _read_tail(stderr_path):
                return True
        else:
            try:
                with socket.create_connection((LOOPBACK, port), timeout=0.5):
                    return True
            except OSError:
                pass
        time.sleep(0.02)
    return False


def start_worker_process(args, stderr_path):
    """Start `worker ARGS...` with stdout and stderr to `stderr_path`: the Popen."""
    with open(stderr_path, "w") as err:
        return subprocess.Popen([binary("worker")] + [str(a) for a in args],
                                stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                start_new_session=True)


@contextlib.contextmanager
def workers(n, threads=1, extra_args=(), weights=None, attempts=5, startup_timeout=10.0):
    """Start `n` worker daemons listening on distinct free 127.0.0.1 ports; always stop them.

    Waits until each one listens, writes a hosts file (`weight=W` from `weights` when given)
    and yields a WorkerSet. `extra_args` go to every worker (e.g. ["--heartbeat-timeout", "2s"]).
    """
    directory = tempfile.mkdtemp(prefix="stampede-workers-")
    daemons = []
    quiet = any(a in ("--quiet", "-q") for a in extra_args)
    try:
        for i in range(n):
            last_error = ""
            for attempt in range(attempts):
                port = free_port()
                stderr_path = os.path.join(directory, f"worker{i}.log")
                proc = start_worker_process(
                    ["--listen", f"tcp://{LOOPBACK}:{port}", "--threads", threads,
                     *extra_args], stderr_path)
                if _wait_listening(proc, port, stderr_path, startup_timeout, quiet):
                    daemons.append(WorkerDaemon(proc, port, stderr_path))
                    break
                _stop_process(proc, signal.SIGKILL)
                last_error = _read_tail(stderr_path)
                if "in use" not in last_error:
                    break
            else:
                last_error += " (no free port after retries)"
            if len(daemons) != i + 1:
                raise AssertionError(f"worker {i} did not start:\n{last_error}")
        hosts_file = os.path.join(directory, "hosts.txt")
        with open(hosts_file, "w") as f:
            f.write("# written by stampede_testlib.workers()\n")
            for i, d in enumerate(daemons):
                weight = f" weight={weights[i]}" if weights else ""
                f.write(f"{d.address}{weight}\n")
        yield WorkerSet(daemons, hosts_file, directory)
    finally:
        for d in daemons:
            rc = _stop_process(d.proc)
            if rc not in (0, -signal.SIGKILL, -signal.SIGTERM):
                print(f"worker {d.address} exited with {rc}:\n{d.stderr()[-2000:]}")
        if os.environ.get("STAMPEDE_KEEP_TMP"):
            print(f"kept workers dir {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def dialling_workers(n, master_endpoint, threads=1, extra_args=()):
    """Reverse mode: start `n` `worker --master MASTER_ENDPOINT` daemons; always stop them.

    They keep redialling until a master listens there. Yields a WorkerSet (no hosts file,
    `.address` None).
    """
    directory = tempfile.mkdtemp(prefix="stampede-dialling-")
    daemons = []
    try:
        for i in range(n):
            stderr_path = os.path.join(directory, f"worker{i}.log")
            proc = start_worker_process(
                ["--master", master_endpoint, "--threads", threads, *extra_args], stderr_path)
            daemons.append(WorkerDaemon(proc, None, stderr_path))
        time.sleep(0.1)
        for i, d in enumerate(daemons):
            if d.proc.poll() is not None:
                raise AssertionError(f"dialling worker {i} exited with {d.proc.returncode}:\n"
                                     f"{d.stderr()}")
        yield WorkerSet(daemons, None, directory)
    finally:
        for d in daemons:
            rc = _stop_process(d.proc)
            if rc not in (0, -signal.SIGKILL, -signal.SIGTERM):
                print(f"dialling worker exited with {rc}:\n{d.stderr()[-2000:]}")
        if os.environ.get("STAMPEDE_KEEP_TMP"):
            print(f"kept workers dir {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def assert_no_crash(testcase, text, context=""):
    """Fail when `text` (a process's stderr) shows a crash or an unhandled exception."""
    for marker in CRASH_MARKERS:
        testcase.assertNotIn(marker, text, context)


# --------------------------------------------------------------------------------------------
# keys and the secure control plane (issue 5)

def keygen(program, out_dir, name=None, force=False):
    """Run `PROGRAM keygen --out OUT_DIR [--name NAME] [--force]`: (exit code, stdout, stderr)."""
    args = [binary(program), "keygen", "--out", out_dir]
    if name:
        args += ["--name", name]
    if force:
        args.append("--force")
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=20)
    return proc.returncode, proc.stdout, proc.stderr


def read_key(path):
    """The Z85 key in a key file written by keygen (comment lines skipped)."""
    with open(path) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    if len(lines) != 1 or len(lines[0]) != 40:
        raise AssertionError(f"{path}: expected one 40-character Z85 key, got {lines!r}")
    return lines[0]


class Keys:
    """Key files made by `make_keys`: `.master_key`, `.master_pub`, `.worker_key`,
    `.worker_pub` (paths), `.worker_keys_dir` (a directory holding only worker.pub, for
    `master --worker-keys`), and `.worker_args` (what a worker needs to serve this master)."""

    def __init__(self, directory):
        self.dir = directory
        self.master_key = os.path.join(directory, "master", "master.key")
        self.master_pub = os.path.join(directory, "master", "master.pub")
        self.worker_key = os.path.join(directory, "worker", "worker.key")
        self.worker_pub = os.path.join(directory, "worker", "worker.pub")
        self.worker_keys_dir = os.path.join(directory, "worker-pubs")
        self.worker_args = ["--master-key", self.master_pub, "--key", self.worker_key]

    def worker_public(self):
        return read_key(self.worker_pub)


def make_keys(directory):
    """`master keygen` and `worker keygen` into `directory`: a Keys."""
    keys = Keys(directory)
    for program, sub in (("master", "master"), ("worker", "worker")):
        rc, out, err = keygen(program, os.path.join(directory, sub))
        if rc != 0:
            raise AssertionError(f"{program} keygen failed with {rc}:\n{out}{err}")
    os.makedirs(keys.worker_keys_dir)
    shutil.copy(keys.worker_pub, keys.worker_keys_dir)
    return keys


def port_is_free(port, host="0.0.0.0"):
    """True when nothing is bound to host:port (TCP) right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def free_port_any():
    """A port that was free a moment ago on every address (0.0.0.0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def fault_target_at(host, startup_timeout=10.0):
    """Like fault_target(), on `host` (an address in 127.0.0.0/8 only); always stopped."""
    with fault_target(startup_timeout, host) as target:
        yield target


# A hand-made control-plane peer: ZMTP 3.0 (NULL mechanism) over a plain socket and a minimal
# protobuf codec, for tests that must send a worker exactly the frames they mean.

def pb_varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def pb_field(number, value):
    """One protobuf field: an int (varint) or bytes/str (length-delimited)."""
    if isinstance(value, int):
        return pb_varint(number << 3) + pb_varint(value)
    if isinstance(value, str):
        value = value.encode()
    return pb_varint((number << 3) | 2) + pb_varint(len(value)) + value


# Envelope body field numbers (proto/stampede.proto).
PB_BODY = {"probe": 10, "hello": 11, "welcome": 12, "prepare": 13, "ready": 14, "start": 15,
           "stats": 16, "error": 17, "halt": 18, "stop": 19, "final": 20, "final_ack": 21,
           "heartbeat": 22, "busy": 23, "refused": 24, "error_tally": 25}


def pb_envelope(body, body_bytes=b"", run_id=0, seq=1, protocol=2):
    """An Envelope with `body` (a PB_BODY name) holding the encoded `body_bytes`."""
    return (pb_field(1, protocol) + pb_field(2, run_id) + pb_field(3, seq) +
            pb_field(PB_BODY[body], body_bytes))


def pb_decode(data):
    """{field number: [int or bytes, ...]} of one protobuf message (varint and bytes only)."""
    fields, i = {}, 0

    def varint():
        nonlocal i
        shift = value = 0
        while True:
            byte = data[i]
            i += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while i < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value = varint()
        elif wire_type == 2:
            n = varint()
            value, i = bytes(data[i:i + n]), i + n
        elif wire_type == 1:
            value, i = bytes(data[i:i + 8]), i + 8
        elif wire_type == 5:
            value, i = bytes(data[i:i + 4]), i + 4
        else:
            raise ValueError(f"wire type {wire_type}")
        fields.setdefault(number, []).append(value)
    return fields


def pb_body(envelope_bytes):
    """(body name, decoded body fields) of an encoded Envelope."""
    fields = pb_decode(envelope_bytes)
    for name, number in PB_BODY.items():
        if number in fields:
            return name, pb_decode(fields[number][0])
    return None, {}


class ZmtpDealer:
    """A minimal ZMTP 3.0 DEALER (NULL mechanism, no keys) on a plain socket to 127.0.0.1:port.

    `send(payload)` sends one single-frame message; `recv(timeout)` returns the next message's
    frames (a list of bytes), or None on timeout. Commands from the peer are skipped."""

    def __init__(self, port, identity=b"", timeout=5.0):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.buffer = b""
        greeting = (b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") +
                    b"\x00" + b"\x00" * 31)
        self.sock.sendall(greeting)
        peer = self._read(64, timeout)
        if peer is None or peer[0] != 0xFF or peer[10] < 3:
            raise AssertionError(f"no ZMTP 3 greeting from port {port}: {peer!r}")
        ready = b"\x05READY" + self._property(b"Socket-Type", b"DEALER") + \
            self._property(b"Identity", identity)
        self._send_frame(ready, command=True)
        deadline = time.monotonic() + timeout
        while True:  # the peer's READY
            frame = self._read_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"no READY from port {port}")
            flags, body = frame
            if flags & 0x04:
                break

    @staticmethod
    def _property(name, value):
        return bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value

    def _send_frame(self, body, command=False, more=False):
        flags = (0x04 if command else 0) | (0x01 if more else 0)
        if len(body) > 255:
            header = bytes([flags | 0x02]) + len(body).to_bytes(8, "big")
        else:
            header = bytes([flags, len(body)])
        self.sock.sendall(header + body)

    def _read(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise ConnectionError("the peer closed the connection")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _read_frame(self, timeout):
        deadline = time.monotonic() + timeout
        head = self._read(1, timeout)
        if head is None:
            return None
        flags = head[0]
        size_bytes = self._read(8 if flags & 0x02 else 1, max(0.5, deadline - time.monotonic()))
        size = int.from_bytes(size_bytes, "big")
        body = self._read(size, max(0.5, deadline - time.monotonic())) if size else b""
        return flags, body

    def send(self, payload):
        self._send_frame(payload)

    def recv(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        frames = []
        while True:
            frame = self._read_frame(max(0.0, deadline - time.monotonic()))
            if frame is None:
                return None
            flags, body = frame
            if flags & 0x04:
                continue  # a command (PING...)
            frames.append(body)
            if not flags & 0x01:
                return frames

    def close(self):
        self.sock.close()
