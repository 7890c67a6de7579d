"""End to end (issue 15): report.html shows the workers that left and joined the run. A report
with a lost worker, its rejoin and a newcomer (master --render-html) is loaded by headless
Chromium: the page's table of events (time, worker, event, reason) equals report.json's
workers[].events, in time order, and every time chart marks each event at its time."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import headless_chromium  # noqa: E402
import stampede_testlib as lib  # noqa: E402

SHOTS = os.path.join(os.path.dirname(os.path.abspath(lib.BIN_DIR)), "report_html")

PAGE_EVENTS_JS = r"""
(() => ({
  rows: [...document.querySelectorAll("#worker-events tbody tr")].map((tr) => {
    const td = tr.querySelectorAll("td");
    return { at_s: JSON.parse(td[0].getAttribute("data-value")),
             worker: JSON.parse(td[1].getAttribute("data-value")), text: td[1].textContent,
             event: td[2].textContent, reason: td[3].textContent };
  }),
  marks: (window.stampedeCharts || []).map((c) => ({ id: c.canvas.id,
    marks: (c.$memberEventMarks || []).map((m) => ({ at_s: m.at_s, event: m.event, worker: m.worker,
      inside: m.x >= c.chartArea.left && m.x <= c.chartArea.right })) })),
  rendered: document.body.getAttribute("data-rendered"),
}))()
"""


def worker(id_, address, state, events, requests):
    return {"id": id_, "address": address, "state": state, "requests": requests, "errors": 0,
            "users": 0, "threads": 1, "clock_offset_ms": 0.0, "events": events}


class ReportEventsTest(lib.TempDirTestCase, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not headless_chromium.find_chromium():
            raise unittest.SkipTest("chromium is not installed and could not be: "
                                    "deploy/install-deps.sh installs Debian's chromium")
        os.makedirs(SHOTS, exist_ok=True)

    def test_the_events_table_and_the_chart_marks_equal_report_json(self):
        seconds = 20
        series = {"elapsed_s": [float(i + 1) for i in range(seconds)]}
        for name, value in (("users", 0), ("requests", 240), ("rps", 240), ("errors", 0),
                            ("dropped", 0), ("p50_ms", 1), ("p90_ms", 2), ("p99_ms", 3),
                            ("max_ms", 9), ("service_p50_ms", 1), ("service_p99_ms", 2),
                            ("lag_p99_ms", 0.5)):
            series[name] = [value] * seconds
        latency = {"min": 0.5, "mean": 1, "p50": 1, "p90": 2, "p95": 2, "p99": 3, "p999": 5,
                   "max": 9}
        totals = {"requests": 4800, "errors": 0, "cancelled": 0, "dropped": 0, "rps": 240.0,
                  "bytes_in": 1, "bytes_out": 1, "errors_by_kind": {}, "latency_ms": latency,
                  "service_ms": latency, "schedule_lag_ms": latency}
        workers = [
            worker(0, "127.0.0.1:7001", "done", [], 1900),
            worker(1, "127.0.0.1:7002", "done", [
                {"at_s": 5.4, "event": "lost", "reason": "silent for 2.0s"},
                {"at_s": 8.1, "event": "joined", "reason": "answered again after its loss"}], 1300),
            worker(2, "dialled-in-3", "done", [
                {"at_s": 12.6, "event": "joined",
                 "reason": "dialled in mid-run, admitted as worker 3 of at most 3"}], 700),
            worker(1, "dialled-in-4", "refused", [], 0),
        ]
        report = {"name": "events", "outcome": "passed", "exit_code": 0,
                  "target": "http://127.0.0.1:1", "started_at": "2026-12-01T00:00:00.000Z",
                  "duration_s": float(seconds),
                  "load": {"model": "open", "rate": 240, "max_in_flight": 100,
                           "stages": [{"hold_s": seconds}]},
                  "totals": totals, "steps": [dict(totals, name="s", method="GET")],
                  "workers": workers, "halt": None, "first_error": None, "thresholds": [],
                  "warnings": []}
        data_path = os.path.join(self.tmp, "data.json")
        with open(data_path, "w") as f:
            json.dump({"report": report, "series": series}, f)
        page = os.path.join(self.tmp, "report.html")
        rc, out, err = lib.run_master(["--render-html", data_path, page], timeout=60)
        self.assertEqual(rc, 0, lib.describe(rc, out, err))
        with headless_chromium.Chromium() as browser:
            browser.load("file://" + page, timeout=60)
            shown = browser.evaluate(PAGE_EVENTS_JS)
            errors = browser.console_errors()
            browser.screenshot(os.path.join(SHOTS, "worker_events.png"))
        context = json.dumps(shown, indent=1)[:5000]
        self.assertEqual(errors, [], context)

        expected = sorted(((e["at_s"], w["id"], w["address"], e["event"], e["reason"])
                           for w in workers for e in w["events"]))
        self.assertEqual(len(expected), 3)
        rows = [(r["at_s"], r["worker"], r["text"], r["event"], r["reason"])
                for r in shown["rows"]]
        self.assertEqual(rows, [(at, id_, f"{id_} ({address})", event, reason)
                                for at, id_, address, event, reason in expected], context)
        # Every chart over time marks every event, inside its plot area; the others none.
        time_charts = [c for c in shown["marks"] if c["id"] != "chart-capacity"]
        self.assertEqual(len(time_charts), 4, context)
        for chart in time_charts:
            self.assertEqual([(m["at_s"], m["event"], m["worker"]) for m in chart["marks"]],
                             [(at, event, id_) for at, id_, _, event, _ in expected],
                             f"{chart['id']}\n{context}")
            self.assertTrue(all(m["inside"] for m in chart["marks"]), context)

    def test_a_run_without_events_has_no_events_table(self):
        report = {"name": "quiet", "outcome": "passed", "exit_code": 0, "load": {"model": "closed"},
                  "totals": {}, "steps": [],
                  "workers": [worker(0, "embedded", "done", [], 10)]}
        data_path = os.path.join(self.tmp, "data.json")
        with open(data_path, "w") as f:
            json.dump({"report": report}, f)
        page = os.path.join(self.tmp, "report.html")
        rc, out, err = lib.run_master(["--render-html", data_path, page], timeout=60)
        self.assertEqual(rc, 0, lib.describe(rc, out, err))
        with headless_chromium.Chromium() as browser:
            browser.load("file://" + page, timeout=60)
            shown = browser.evaluate(PAGE_EVENTS_JS)
            errors = browser.console_errors()
        self.assertEqual(errors, [], shown)
        self.assertEqual(shown["rows"], [], shown)
        self.assertTrue(all(c["marks"] == [] for c in shown["marks"]), shown)


if __name__ == "__main__":
    unittest.main(verbosity=2)
