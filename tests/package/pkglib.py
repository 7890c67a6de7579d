"""Helpers for the package tests (tests/package/): a short cluster run against a real nginx on
127.0.0.1, driven by any master command and any worker command (the installed package's, or
the container image's run by chroot). Reuses tests/e2e/stampede_testlib.py for nginx."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
import stampede_testlib as lib  # noqa: E402

SOURCE_DIR = os.path.abspath(os.path.join(HERE, "..", ".."))


def require_root(what):
    if os.geteuid() != 0:
        raise SystemExit(f"{what}: must run as root (it installs packages or uses chroot)")


def ensure_debian_packages(names):
    """apt-get install the Debian packages among `names` that are not installed yet."""
    missing = []
    for name in names:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                                capture_output=True, text=True).stdout
        if status != "install ok installed":
            missing.append(name)
    if missing:
        print(f"installing {' '.join(missing)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env)


def run(cmd, **kwargs):
    """Run a command, fail with its output when it exits non-zero: the CompletedProcess."""
    result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}\n--- stdout\n"
                             f"{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}")
    return result


def _wait_for_log(proc, path, text, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with open(path, errors="replace") as f:
            if text in f.read():
                return True
        time.sleep(0.05)
    return False


def drive_run(master_cmd, worker_cmd, master_args=(), worker_args=(), users=4,
              duration="2s", timeout=60, out_root=None, out_uid=None):
    """Start nginx on loopback and `WORKER_CMD --listen tcp://127.0.0.1:PORT WORKER_ARGS`, run
    `MASTER_CMD --workers HOSTS --out DIR MASTER_ARGS SCENARIO` against it, and check that the
    run passed and that the report's request count equals nginx's access log. Returns the
    report's total request count.

    With `out_root` (a chroot the master runs in), the hosts file, scenario and output go
    under OUT_ROOT/tmp, owned by `out_uid`, and the master is given paths inside the root."""
    tmp = tempfile.mkdtemp(prefix="stampede-pkg-run-",
                           dir=os.path.join(out_root, "tmp") if out_root else None)
    inside = (lambda path: "/" + os.path.relpath(path, out_root)) if out_root else (lambda p: p)
    worker = None
    try:
        with lib.nginx() as server:
            port = lib.free_port()
            worker_log = os.path.join(tmp, "worker.log")
            with open(worker_log, "w") as log:
                worker = subprocess.Popen(
                    [*worker_cmd, "--listen", f"tcp://127.0.0.1:{port}", "--threads", "2",
                     *worker_args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    start_new_session=True)
            if not _wait_for_log(worker, worker_log, "listening on", 15):
                raise AssertionError(f"the worker did not start (rc {worker.poll()}):\n"
                                     + open(worker_log, errors="replace").read()[-3000:])
            hosts = os.path.join(tmp, "hosts.txt")
            with open(hosts, "w") as f:
                f.write(f"127.0.0.1:{port}\n")
            scenario = lib.write_scenario(
                tmp, lib.one_get_scenario(server.url, users, duration, "package-test"))
            out_dir = os.path.join(tmp, "out")
            if out_uid is not None:
                for path in (tmp, hosts, scenario):
                    os.chown(path, out_uid, out_uid)
            cmd = [*master_cmd, "--workers", inside(hosts), "--out", inside(out_dir), "--quiet",
                   *master_args, inside(scenario)]
            result = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                    timeout=timeout, stdin=subprocess.DEVNULL)
            lines = lib.wait_access_log_stable(server.access_log)
            context = (lib.describe(result.returncode, result.stdout, result.stderr)
                       + "\n--- worker log\n"
                       + open(worker_log, errors="replace").read()[-3000:])
            if result.returncode != 0:
                raise AssertionError(f"{cmd} failed\n{context}")
            report = lib.load_report(out_dir)
            totals = report["totals"]
            if report["outcome"] != "passed" or totals["errors"] != 0:
                raise AssertionError(f"the run did not pass cleanly: {report['outcome']}, "
                                     f"{totals['errors']} errors\n{context}")
            if totals["requests"] <= 0 or totals["requests"] != lines:
                raise AssertionError(f"report.json counts {totals['requests']} requests, "
                                     f"nginx logged {lines}\n{context}")
            return totals["requests"]
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
        shutil.rmtree(tmp, ignore_errors=True)
