"""End to end (issue 14): report.html, loaded from disk by headless Chromium (Debian's chromium,
over the DevTools protocol): no console error, no network request but the file itself, every
chart drawn (its data's colour inside the chart area of a non-empty canvas), and the page's
totals, outcome and first error equal to report.json's. The capacity curve from a hand-made
report (master --render-html), and a 24-hour soak's 86,400 points a series load in seconds.
Screenshots are saved under the build directory (report_html/)."""

import json
import math
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import headless_chromium  # noqa: E402
import stampede_testlib as lib  # noqa: E402

SHOTS = os.path.join(os.path.dirname(os.path.abspath(lib.BIN_DIR)), "report_html")
# A 24-hour soak must not freeze the page: loaded, drawn and ready well within this.
SOAK_LOAD_LIMIT_S = 15.0

# For each chart: how many pixels in its chart area carry each drawn dataset's colour
# (within a small tolerance, for antialiasing). A chart of nothing but axes has none.
CHART_PIXELS_JS = r"""
(() => (window.stampedeCharts || []).map((chart) => {
  const area = chart.chartArea;
  const ctx = chart.canvas.getContext("2d");
  const ratio = chart.currentDevicePixelRatio || 1;
  // The chart area and the 4 px around it that the page lets points spill into (clip: 4).
  const img = ctx.getImageData((area.left - 4) * ratio, (area.top - 4) * ratio,
    (area.right - area.left + 8) * ratio, (area.bottom - area.top + 8) * ratio).data;
  const hex = (c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
  const drawn = chart.data.datasets.map((ds) => {
    const values = (ds.data || []).map((p) => (typeof p === "object" ? p.y : p));
    if (!values.some((v) => typeof v === "number" && v !== 0)) return null;  // nothing to see
    const want = hex(typeof ds.borderColor === "string" && ds.type !== "bar" && chart.config.type !== "bar"
      ? ds.borderColor : ds.backgroundColor);
    let n = 0;
    for (let i = 0; i < img.length; i += 4) {
      if (img[i + 3] > 200 && Math.abs(img[i] - want[0]) < 40 && Math.abs(img[i + 1] - want[1]) < 40 &&
          Math.abs(img[i + 2] - want[2]) < 40) n++;
    }
    return { label: ds.label, pixels: n, index: chart.data.datasets.indexOf(ds) };
  });
  // A dataset whose every point lies within 3 px of another drawn dataset's is hidden under
  // it (p50 and p90 of a fast target, say): that one's colour stands for both.
  const near = (a, b) => Math.abs(a.x - b.x) < 3 && Math.abs(a.y - b.y) < 3;
  for (const d of drawn) {
    if (!d || d.pixels > 5) continue;
    const mine = chart.getDatasetMeta(d.index).data;
    d.hiddenUnder = drawn.filter((o) => o && o !== d && o.pixels > 5).map((o) => o.label).find((label) => {
      const theirs = chart.getDatasetMeta(drawn.find((o) => o && o.label === label).index).data;
      return mine.length > 0 && mine.every((p) => theirs.some((q) => near(p, q)));
    }) || null;
  }
  const zero = chart.data.datasets.every((ds) => ds.data.length > 0 &&
    ds.data.every((p) => (typeof p === "object" ? p.y : p) === 0));
  return { id: chart.canvas.id, drawn: drawn, zero: zero };
}))()
"""

PAGE_FIGURES_JS = r"""
(() => {
  const cells = [...document.querySelectorAll("#totals td")];
  return {
    outcome: document.getElementById("outcome").textContent,
    totals: cells.map((td) => ({ text: td.textContent, value: td.getAttribute("data-value") })),
    firstError: (document.querySelector("#first-error pre") || {}).textContent || null,
    canvases: [...document.querySelectorAll("canvas")].map((c) => c.id),
    workers: [...document.querySelectorAll("#workers tbody tr")].map((tr) => tr.id),
    haltRows: document.querySelectorAll("#halt tbody tr").length,
    capacityRows: document.querySelectorAll("#capacity tbody tr").length,
    rendered: document.body.getAttribute("data-rendered"),
  };
})()
"""


class ReportHtmlTest(lib.TempDirTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not headless_chromium.find_chromium():
            raise unittest.SkipTest("chromium is not installed and could not be: "
                                    "deploy/install-deps.sh installs Debian's chromium")
        os.makedirs(SHOTS, exist_ok=True)

    def open_page(self, path, shot_name):
        """Loads `path` in a fresh headless Chromium: (seconds to load, figures, charts)."""
        with headless_chromium.Chromium() as browser:
            browser.call("Network.enable")
            url = "file://" + os.path.abspath(path)
            load_s = browser.load(url, timeout=60)
            figures = browser.evaluate(PAGE_FIGURES_JS)
            charts = browser.evaluate(CHART_PIXELS_JS, timeout=60)
            errors = browser.console_errors()
            requests = browser.requests_made()
            browser.screenshot(os.path.join(SHOTS, shot_name))
        context = json.dumps({"figures": figures, "charts": charts, "errors": errors,
                              "requests": requests}, indent=1)[:6000]
        self.assertEqual(errors, [], context)
        # Self-contained: the page asked the network for nothing but itself.
        self.assertEqual(requests, [url], context)
        self.assertEqual(figures["rendered"], str(len(charts)), context)
        for chart in charts:
            drawn = [d for d in chart["drawn"] if d is not None]
            # All zero (nothing dropped, say): a line along the axis, not checked by colour.
            self.assertEqual(len(drawn) == 0, chart["zero"], f"{chart['id']}\n{context}")
            for d in drawn:
                self.assertTrue(d["pixels"] > 5 or d["hiddenUnder"],
                                f"{chart['id']} {d['label']} not drawn\n{context}")
        return load_s, figures, charts, context

    def assert_totals(self, figures, report, context):
        totals = report["totals"]
        cells = figures["totals"]
        # step, requests, errors, rps, p50, p90, p99, max, cancelled, dropped, kinds
        self.assertEqual(cells[0]["text"], "total", context)
        self.assertEqual(int(cells[1]["text"].replace(",", "")), totals["requests"], context)
        self.assertEqual(int(cells[2]["text"].replace(",", "")), totals["errors"], context)
        for i, key in ((1, "requests"), (2, "errors"), (3, "rps"), (8, "cancelled"),
                       (9, "dropped")):
            self.assertEqual(json.loads(cells[i]["value"]), totals[key], f"{key}\n{context}")
        for i, key in ((4, "p50"), (5, "p90"), (6, "p99"), (7, "max")):
            self.assertEqual(json.loads(cells[i]["value"]), totals["latency_ms"][key], context)
            self.assertAlmostEqual(float(cells[i]["text"]), totals["latency_ms"][key], delta=0.05,
                                   msg=context)
        self.assertIn(report["outcome"].upper(), figures["outcome"], context)
        self.assertIn(f"exit code {report['exit_code']}", figures["outcome"], context)

    def test_an_open_model_run_is_drawn_with_its_figures(self):
        out_dir = os.path.join(self.tmp, "out")
        with lib.fault_target() as target:
            text = (f"name: e2e-html-open\ntarget: {target.url}\n"
                    "load: {rate: 300/s, ramp: 1s, duration: 3s, max_in_flight: 50}\n"
                    "halt: {on_error: never, thresholds: [\"p99 < 10s\"]}\n"
                    "flows:\n  - name: f\n    steps:\n"
                    "      - {get: /delay/2, name: slow}\n      - {get: /status/503, name: broken}\n")
            rc, out, err, context = lib.run_local(self.tmp, text, out_dir)
        self.assertEqual(rc, 0, context)
        report = lib.load_report(out_dir)
        self.assertGreater(report["totals"]["errors"], 0, report)
        _, figures, charts, page = self.open_page(os.path.join(out_dir, "report.html"),
                                                  "open_model.png")
        context += "\n" + page
        self.assert_totals(figures, report, context)
        self.assertEqual(figures["canvases"],
                         ["chart-throughput", "chart-latency", "chart-load", "chart-dropped"],
                         context)
        latency = next(c for c in charts if c["id"] == "chart-latency")
        for label in ("p50", "p99", "service p99", "schedule lag p99"):
            self.assertIn(label, [d["label"] for d in latency["drawn"] if d], context)
        self.assertTrue(next(c for c in charts if c["id"] == "chart-dropped")["zero"], context)
        self.assertIn("503", figures["firstError"], context)
        self.assertEqual(figures["workers"], ["worker-0"], context)

    def test_a_halted_run_shows_the_first_error_and_the_halt_timeline(self):
        out_dir = os.path.join(self.tmp, "out")
        with lib.fault_target() as target:
            rc, out, err, context = lib.run_local(self.tmp, lib.one_get_scenario(
                target.url, 4, "10s", "e2e-html-halt", path="/fail-after/300",
                halt={"on_error": "first"}), out_dir)
        self.assertEqual(rc, 1, context)
        report = lib.load_report(out_dir)
        _, figures, charts, page = self.open_page(os.path.join(out_dir, "report.html"),
                                                  "halted.png")
        context += "\n" + page
        self.assert_totals(figures, report, context)
        self.assertIn("chart-halt", figures["canvases"], context)
        # first error, halt sent, the worker's last request, all stopped.
        self.assertEqual(figures["haltRows"], 4, context)
        first = report["first_error"]
        for part in (first["url"], first["body"].strip(), "status 500 (http_500)"):
            self.assertIn(part, figures["firstError"], context)

    def test_a_capacity_search_and_a_day_of_seconds_from_a_hand_made_report(self):
        rows = 86_400
        series = {"elapsed_s": [float(i + 1) for i in range(rows)]}
        for name, scale in (("users", 0), ("requests", 1000), ("rps", 1000), ("errors", 300),
                            ("dropped", 3), ("p50_ms", 5), ("p90_ms", 9), ("p99_ms", 20),
                            ("max_ms", 80), ("service_p50_ms", 4), ("service_p99_ms", 15),
                            ("lag_p99_ms", 2)):
            # A shape of its own per column, so that no line hides another.
            phase = len(series)
            series[name] = [round(scale * (1.5 + math.sin(i / 3600.0 + phase)), 3)
                            for i in range(rows)]
        probes = [{"probe": i + 1, "rate_asked": rate, "rate_achieved": rate * 0.99,
                   "latency_ms": {"p50": 2 + i, "p90": 4 + 2 * i, "p99": 5 + 8 * i * i,
                                  "max": 60 + 10 * i},
                   "error_rate": 0.0 if i < 4 else 0.02,
                   "verdict": "pass" if i < 4 else "fail",
                   "reason": "" if i < 4 else "p99 above the SLO"}
                  for i, rate in enumerate((100, 200, 400, 800, 1600))]
        latency = {"min": 1, "mean": 6, "p50": 5, "p90": 9, "p95": 12, "p99": 20, "p999": 50,
                   "max": 80}
        totals = {"requests": 129_600_000, "errors": 86_400, "cancelled": 0, "dropped": 0,
                  "rps": 1500.0, "bytes_in": 1, "bytes_out": 1, "errors_by_kind": {"http_503": 86_400},
                  "latency_ms": latency, "service_ms": latency, "schedule_lag_ms": latency}
        report = {"name": "soak-and-capacity", "outcome": "passed", "exit_code": 0,
                  "target": "http://127.0.0.1:1", "started_at": "2026-12-01T00:00:00.000Z",
                  "duration_s": 86_400.0,
                  "load": {"model": "open", "rate": 1500, "max_in_flight": 1000,
                           "stages": [{"to": 1500, "over_s": 60}, {"hold_s": 86_340}]},
                  "totals": totals, "steps": [dict(totals, name="s", method="GET")],
                  "workers": [{"id": 0, "address": "embedded", "state": "done",
                               "requests": 129_600_000, "errors": 86_400, "users": 0,
                               "threads": 2, "clock_offset_ms": 0.0}],
                  "halt": None, "first_error": None, "thresholds": [], "warnings": [],
                  "capacity": {"max_passing_rate": 800, "first_failing_rate": 1600,
                               "limited_by": "latency", "slo": {"p99_ms": 250, "error_rate": 0.01},
                               "probes": probes}}
        data_path = os.path.join(self.tmp, "data.json")
        with open(data_path, "w") as f:
            json.dump({"report": report, "series": series}, f)
        page_path = os.path.join(self.tmp, "report.html")
        started = time.monotonic()
        rc, out, err = lib.run_master(["--render-html", data_path, page_path], timeout=60)
        render_s = time.monotonic() - started
        self.assertEqual(rc, 0, lib.describe(rc, out, err))
        load_s, figures, charts, context = self.open_page(page_path, "soak_capacity.png")
        size_mb = os.path.getsize(page_path) / 1e6
        print(f"\n  86,400-row page: {size_mb:.1f} MB, rendered in {render_s:.2f} s, "
              f"loaded and drawn by chromium in {load_s:.2f} s")
        self.assertLess(load_s, SOAK_LOAD_LIMIT_S, context)
        self.assert_totals(figures, report, context)
        self.assertIn("chart-capacity", figures["canvases"], context)
        self.assertEqual(figures["capacityRows"], len(probes), context)
        capacity = next(c for c in charts if c["id"] == "chart-capacity")
        self.assertEqual([d["label"] for d in capacity["drawn"] if d], ["p99 latency", "SLO p99"],
                         context)

    def test_render_html_refuses_what_is_not_a_report(self):
        bad = os.path.join(self.tmp, "bad.json")
        with open(bad, "w") as f:
            f.write("[1, 2")
        rc, out, err = lib.run_master(["--render-html", bad, os.path.join(self.tmp, "x.html")])
        self.assertEqual(rc, 2, err)
        self.assertIn("bad.json: not a JSON object", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)


if __name__ == "__main__":
    unittest.main()
