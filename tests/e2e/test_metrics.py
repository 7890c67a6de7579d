"""End to end (issue 14): --metrics-listen, scraped by a real Prometheus (Debian's prometheus)
every second during a 15 s run. While the master keeps its final figures up (--metrics-grace),
PromQL over Prometheus' HTTP API gives sum(stampede_requests_total) equal to report.json's total
(and the errors, the histogram's count, the finished flag); during the run the scraped series
grew second by second. The exposition passes `promtool check metrics`. The service-time
histogram (open model, from the send) per step: its count equals report.json's and nginx's
access log's, its sum and buckets agree with report.json's service_ms. Loopback only."""

import collections
import json
import math
import os
import re
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


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_exposition(text):
    """The text format, strictly: {(name, frozenset(labels)): value} and {family: type}. Every
    line is a comment, a HELP/TYPE line or a sample; anything else is an AssertionError."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            types[family] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = SAMPLE.match(line)
        if not match:
            raise AssertionError(f"not a sample line: {line!r}")
        name, labels, value = match.groups()
        pairs = LABEL.findall(labels or "")
        if labels and ",".join(f'{k}="{v}"' for k, v in pairs) != labels:
            raise AssertionError(f"bad labels: {line!r}")
        key = (name, frozenset(pairs))
        if key in samples:
            raise AssertionError(f"duplicate sample: {line!r}")
        samples[key] = float(value)
    return samples, types


class ServiceTimeTest(lib.TempDirTestCase, unittest.TestCase):
    """/metrics' service-time histogram (the open model's time from the send, next to the
    latency from the schedule): per step, its count is report.json's and nginx's, its sum is
    report.json's mean times the count, and its buckets agree with report.json's service-time
    percentiles. Scraped from the master directly (no Prometheus needed)."""

    def test_service_time_histogram_per_step_matches_the_report_and_nginx(self):
        metrics_port = lib.free_port()
        out_dir = os.path.join(self.tmp, "out")
        with lib.nginx() as server:
            text = (f"name: e2e-service\ntarget: {server.url}\n"
                    "load: {rate: 150/s, duration: 4s}\nflows:\n  - name: f\n    steps:\n"
                    "      - {get: /, name: home}\n      - {get: /products.json, name: products}\n")
            path = lib.write_scenario(self.tmp, text)
            master = lib.start_master(["--metrics-listen", f"{lib.LOOPBACK}:{metrics_port}",
                                       "--metrics-grace", "3s", "--out", out_dir, "--quiet", path],
                                      self.tmp)
            deadline = time.monotonic() + 30
            exposition = ""
            while "stampede_run_finished 1\n" not in exposition:
                self.assertLess(time.monotonic(), deadline, "no final figures on /metrics")
                self.assertIsNone(master.poll(), "the master ended before its final figures")
                try:
                    exposition = get(f"http://{lib.LOOPBACK}:{metrics_port}/metrics")[1]
                except OSError:
                    pass
                time.sleep(0.2)
            rc, out, err = lib.finish_master(master, self.tmp, 15)
            nginx_by_path = collections.Counter(
                e.uri for e in server.access_log_entries())
        context = lib.describe(rc, out, err) + "\n" + exposition
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        samples, types = parse_exposition(exposition)
        self.assertEqual(types.get("stampede_service_seconds"), "histogram", context)
        self.assertEqual(types.get("stampede_latency_seconds"), "histogram", context)
        bounds = sorted({dict(labels)["le"] for name, labels in samples
                         if name == "stampede_latency_seconds_bucket"} - {"+Inf"}, key=float)
        self.assertEqual(len(bounds), 16, context)
        for step, path in (("home", "/"), ("products", "/products.json")):
            figures = next(s for s in report["steps"] if s["name"] == step)
            labels = {("step", step), ("method", "GET")}

            def sample(name, **extra):
                key = (name, frozenset(labels | set(extra.items())))
                self.assertIn(key, samples, f"{name} {extra} for {step}\n{context}")
                return samples[key]

            count = sample("stampede_service_seconds_count")
            where = f"step {step}: {figures}\n{context}"
            self.assertGreater(count, 400, where)
            self.assertEqual(count, figures["requests"], where)
            self.assertEqual(count, nginx_by_path[path], where)
            self.assertEqual(sample("stampede_service_seconds_bucket", le="+Inf"), count, where)
            # The sum is the service time's, not the latency's: on the first step of each
            # iteration (the scheduled one) the latency adds the schedule lag.
            service = figures["service_ms"]
            self.assertAlmostEqual(sample("stampede_service_seconds_sum") / count * 1000,
                                   service["mean"], delta=1e-6 * service["mean"], msg=where)
            self.assertAlmostEqual(sample("stampede_latency_seconds_sum") / count * 1000,
                                   figures["latency_ms"]["mean"],
                                   delta=1e-6 * figures["latency_ms"]["mean"], msg=where)
            if step == "home":
                self.assertGreater(figures["schedule_lag_ms"]["mean"], 0, where)
                self.assertGreater(sample("stampede_latency_seconds_sum"),
                                   sample("stampede_service_seconds_sum"), where)
            # The same buckets as the latency's, cumulative, and each agrees with the report's
            # percentiles: a bound above a percentile holds at least its rank, a bound below
            # holds fewer (1 % either side left out: the HDR histogram's bucket widths).
            got = [sample("stampede_service_seconds_bucket", le=b) for b in bounds]
            self.assertEqual(got, sorted(got), where)
            for q, key in ((50, "p50"), (90, "p90"), (99, "p99")):
                value_s = service[key] / 1000
                rank = math.ceil(q / 100 * count)
                for bound, at_or_below in zip(map(float, bounds), got):
                    if bound >= value_s * 1.01:
                        self.assertGreaterEqual(at_or_below, rank, f"{key} le={bound} {where}")
                    elif bound <= value_s * 0.99:
                        self.assertLess(at_or_below, rank, f"{key} le={bound} {where}")
        if PROMTOOL:
            done = subprocess.run([PROMTOOL, "check", "metrics"], input=exposition, text=True,
                                  capture_output=True, timeout=30)
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr + exposition)


if __name__ == "__main__":
    unittest.main()
