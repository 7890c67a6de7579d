"""End to end (issue 14): --metrics-listen, scraped by a real Prometheus (Debian's prometheus)
every second during a 15 s run. While the master keeps its final figures up (--metrics-grace),
PromQL over Prometheus' HTTP API gives sum(stampede_requests_total) equal to report.json's total
(and the errors, the histogram's count, the finished flag); during the run the scraped series
grew second by second. The exposition passes `promtool check metrics`. Loopback only."""

import json
import os
import shutil
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stampede_testlib as lib  # noqa: E402

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
RUN_S = 15
GRACE_S = 8


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback
        return response.status, response.read().decode()


class Prometheus:
    def __init__(self, workdir, scrape_port):
        self.port = lib.free_port()
        self.url = f"http://{lib.LOOPBACK}:{self.port}"
        config = os.path.join(workdir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: stampede\n    static_configs:\n"
                    f"      - targets: ['{lib.LOOPBACK}:{scrape_port}']\n")
        self.log = open(os.path.join(workdir, "prometheus.log"), "w+")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(workdir, 'tsdb')}",
             f"--web.listen-address={lib.LOOPBACK}:{self.port}"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                if get(self.url + "/-/ready", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("prometheus did not start:\n" + self.text())
            time.sleep(0.2)

    def text(self):
        self.log.seek(0)
        return self.log.read()[-4000:]

    def query(self, expr):
        status, body = get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        data = json.loads(body)
        if data["status"] != "success":
            raise AssertionError(f"{expr}: {body}")
        return [float(r["value"][1]) for r in data["data"]["result"]]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@unittest.skipUnless(PROMETHEUS, "prometheus not installed (Debian package; install-deps.sh)")
class MetricsTest(lib.TempDirTestCase, unittest.TestCase):
    def test_prometheus_scrapes_the_run_and_its_final_total_equals_the_report(self):
        metrics_port = lib.free_port()
        prometheus = Prometheus(self.tmp, metrics_port)
        self.addCleanup(prometheus.stop)
        out_dir = os.path.join(self.tmp, "out")
        with lib.fault_target() as target:
            text = (f"name: e2e-metrics\ntarget: {target.url}\n"
                    f"load: {{users: 4, duration: {RUN_S}s}}\nhalt: {{on_error: never}}\n"
                    "flows:\n  - name: f\n    steps:\n"
                    "      - {get: /delay/5, name: slow}\n      - {get: /status/503, name: broken}\n")
            path = lib.write_scenario(self.tmp, text)
            master = lib.start_master(["--metrics-listen", f"{lib.LOOPBACK}:{metrics_port}",
                                       "--metrics-grace", f"{GRACE_S}s", "--out", out_dir,
                                       "--quiet", path], self.tmp)
            # During the run: the counter Prometheus holds grows.
            seen = []
            deadline = time.monotonic() + RUN_S + 20
            while not os.path.exists(os.path.join(out_dir, "report.json")):
                self.assertIsNone(master.poll(), "the master ended before its report")
                self.assertLess(time.monotonic(), deadline, prometheus.text())
                values = prometheus.query("sum(stampede_requests_total)")
                if values:
                    seen.append(values[0])
                time.sleep(1)
            # The report is written: the master now serves its final figures for GRACE_S.
            # Prometheus has them at its next scrape (1 s), or a few later on a loaded machine;
            # each scrape is one published text, so the totals come with the finished flag.
            final_by = time.monotonic() + GRACE_S - 1
            while prometheus.query("stampede_run_finished") != [1.0]:
                if time.monotonic() > final_by:
                    break
                time.sleep(0.25)
            finished = prometheus.query("stampede_run_finished")
            total = prometheus.query("sum(stampede_requests_total)")
            errors = prometheus.query("sum(stampede_errors_total)")
            count = prometheus.query("sum(stampede_latency_seconds_count)")
            inf_bucket = prometheus.query('sum(stampede_latency_seconds_bucket{le="+Inf"})')
            exit_code = prometheus.query("stampede_run_exit_code")
            info = prometheus.query('stampede_run_info{name="e2e-metrics"}')
            _, exposition = get(f"http://{lib.LOOPBACK}:{metrics_port}/metrics")
            rc, out, err = lib.finish_master(master, self.tmp, GRACE_S + 10)
        context = lib.describe(rc, out, err) + "\n" + prometheus.text()[-1500:]
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        totals = report["totals"]
        context += f"\nseen during the run: {seen}"
        self.assertEqual(finished, [1.0], context)
        self.assertEqual(total, [float(totals["requests"])], context)
        self.assertEqual(errors, [float(totals["errors"])], context)
        self.assertEqual(count, [float(totals["requests"])], context)
        self.assertEqual(inf_bucket, count, context)
        self.assertEqual(exit_code, [0.0], context)
        self.assertEqual(info, [1.0], context)
        self.assertGreater(totals["errors"], 0, context)
        # Scraped live: at least five distinct, growing values before the end.
        growing = sorted(set(seen))
        self.assertGreaterEqual(len(growing), 5, context)
        self.assertEqual(seen, sorted(seen), context)
        self.assertLess(growing[-2], totals["requests"], context)
        # The master waited out the grace period, and said so.
        self.assertIn(f"for {GRACE_S}s (--metrics-grace", out, context)
        if PROMTOOL:
            done = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, text=True,
                                  capture_output=True, timeout=30)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr + exposition)

    def test_a_port_in_use_is_refused_before_anything_starts(self):
        import socket
        with socket.socket() as busy:
            busy.bind((lib.LOOPBACK, 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            path = lib.write_scenario(self.tmp, lib.one_get_scenario(
                "http://127.0.0.1:9", 1, "1s", "e2e-metrics-busy"))
            rc, out, err = lib.run_master(["--metrics-listen", f"{lib.LOOPBACK}:{port}", path])
        self.assertEqual(rc, 2, err)
        self.assertIn(f"--metrics-listen {lib.LOOPBACK}:{port}: cannot listen: Address already "
                      "in use", err)


if __name__ == "__main__":
    unittest.main()
