// report.html's script (embedded by master/CMakeLists.txt). It draws the page from the JSON
// embedded in it (#stampede-data: report.json's own JSON and the timeseries rows) with Chart.js.
// Figures are shown as report.json has them, never recomputed.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("stampede-data").textContent);
  const report = data.report || {};
  const series = data.series || {};
  const main = document.getElementById("report");
  main.textContent = "";

  // --- small DOM helpers ------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, value);
    }
    for (const child of [].concat(children === undefined ? [] : children)) {
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }
  function section(title, id) {
    const s = el("section", { id: id }, [el("h2", {}, title)]);
    main.append(s);
    return s;
  }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function count(v) { return isNum(v) ? v.toLocaleString("en-US") : "–"; }
  function msText(v) { return isNum(v) ? v.toFixed(v < 10 ? 3 : 1) : "–"; }
  function num(v, digits) { return isNum(v) ? v.toFixed(digits) : "–"; }
  // A table cell that keeps report.json's value as it is in data-value (tests read it).
  function cell(text, value, cls) {
    return el("td", { "data-value": value === undefined ? null : JSON.stringify(value), class: cls }, text);
  }
  function table(head, rows) {
    return el("table", {}, [
      el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows),
    ]);
  }

  // --- banner and scenario -----------------------------------------------------------------
  const outcome = report.outcome || "unknown";
  main.append(el("h1", {}, "Stampede report: " + (report.name || "")));
  main.append(el("div", { class: "banner " + outcome, id: "outcome", "data-outcome": outcome },
    outcome.toUpperCase() + " — exit code " + report.exit_code));
  const load = report.load || {};
  const open = load.model === "open";
  const meta = el("dl", { class: "meta" });
  function metaRow(label, value, id) {
    meta.append(el("dt", {}, label), el("dd", { id: id }, value === undefined || value === null ? "–" : String(value)));
  }
  metaRow("scenario", report.name + (report.scenario_file ? "  (" + report.scenario_file + ")" : ""));
  metaRow("target", report.target);
  metaRow("load model", open
    ? "open: " + count(load.rate) + " arrivals/s, max " + count(load.max_in_flight) + " in flight"
    : "closed: " + count(load.users) + " virtual users");
  metaRow("started", report.started_at);
  metaRow("duration", num(report.duration_s, 3) + " s", "duration");
  if (report.overrides && report.overrides.length) metaRow("overrides", report.overrides.join("  "));
  main.append(meta);
  if (report.warnings && report.warnings.length) {
    main.append(el("ul", { class: "warnings" }, report.warnings.map((w) => el("li", {}, w))));
  }

  // --- first error ---------------------------------------------------------------------------
  const fe = report.first_error;
  if (fe) {
    const s = section("First error", "first-error");
    const lines = [
      "worker " + fe.worker + ", virtual user " + fe.vu + ", flow \"" + fe.flow + "\", step \"" + fe.step + "\"",
      fe.method + " " + fe.url,
      "status " + fe.status + " (" + fe.error_kind + "): " + fe.detail,
      "at " + num(fe.at_s, 3) + " s (" + fe.at + ")",
      "",
    ];
    for (const [k, v] of Object.entries(fe.headers || {})) lines.push(k + ": " + v);
    if (fe.body) lines.push("", fe.body);
    s.append(el("pre", { class: "error" }, lines.join("\n")));
  }

  // --- summary per step and total -----------------------------------------------------------
  {
    const s = section("Summary", "summary");
    const head = ["step", "requests", "errors", "rps", "p50 ms", "p90 ms", "p99 ms", "max ms", "cancelled", "dropped", "errors by kind"];
    function row(name, c, cls, id) {
      const lat = c.latency_ms || {};
      const kinds = Object.entries(c.errors_by_kind || {}).map(([k, n]) => k + " " + n).join(", ");
      return el("tr", { class: cls, id: id }, [
        el("td", {}, name),
        cell(count(c.requests), c.requests),
        cell(count(c.errors), c.errors),
        cell(num(c.rps, 1), c.rps),
        cell(msText(lat.p50), lat.p50),
        cell(msText(lat.p90), lat.p90),
        cell(msText(lat.p99), lat.p99),
        cell(msText(lat.max), lat.max),
        cell(count(c.cancelled), c.cancelled),
        cell(count(c.dropped), c.dropped),
        el("td", { class: "text" }, kinds),
      ]);
    }
    const rows = (report.steps || []).map((st) => row(st.method + " " + st.name, st));
    rows.push(row("total", report.totals || {}, "total", "totals"));
    s.append(table(head, rows));
    if (open && report.totals && report.totals.schedule_lag_ms) {
      const t = report.totals;
      s.append(el("p", { class: "note" }, "Open model: latency runs from each arrival's scheduled time. Service time p99 " +
        msText(t.service_ms.p99) + " ms; schedule lag p99 " + msText(t.schedule_lag_ms.p99) + " ms" +
        (report.saturated ? " (saturated: the generator fell behind)" : "") + "."));
    }
  }

  // --- messaging: end to end per SUBSCRIBE step, split by same- and cross-worker pairs --------
  {
    const subs = (report.steps || []).filter((st) => st.messaging && st.messaging.consumed !== undefined);
    if (subs.length) {
      const s = section("Messaging", "messaging");
      const head = ["step", "end to end", "count", "p50 ms", "p90 ms", "p99 ms", "max ms", "clock error ± ms"];
      const rows = [];
      for (const st of subs) {
        const m = st.messaging;
        const line = (what, h, bound, cls) => el("tr", { class: cls }, [
          el("td", {}, st.method + " " + st.name),
          el("td", { class: "text" }, what),
          cell(count(h.count), h.count),
          cell(msText(h.p50), h.p50),
          cell(msText(h.p90), h.p90),
          cell(msText(h.p99), h.p99),
          cell(msText(h.max), h.max),
          cell(msText(bound), bound),
        ]);
        rows.push(line("from the send, all", Object.assign({ count: m.consumed }, m.e2e_from_sent_ms || {}), m.clock_error_bound_ms));
        if (m.e2e_same_worker_ms) rows.push(line("same worker (exact reference)", m.e2e_same_worker_ms, 0, "same-worker"));
        if (m.e2e_cross_worker_ms) rows.push(line("cross worker", m.e2e_cross_worker_ms, m.clock_error_bound_ms, "cross-worker"));
      }
      s.append(table(head, rows));
      const notes = subs.map((st) => {
        const m = st.messaging;
        return st.name + ": consumed " + count(m.consumed) + ", lost " + count(m.lost) + ", duplicate " +
          count(m.duplicate) + ", in flight at the end " + count(m.in_flight_at_end) + ", redelivered " +
          count(m.redelivered) + ", stale " + count(m.stale) + ", reconnects " + count(m.reconnects);
      });
      s.append(el("p", { class: "note" }, notes.join("; ") + ". Clock offsets are re-measured on every heartbeat; the bound holds for cross-worker pairs."));
    }
  }
  // --- workers leaving and joining (workers[].events), for the time charts and their table ---
  const memberEvents = [];
  for (const w of report.workers || []) {
    for (const e of w.events || []) {
      memberEvents.push({ at_s: e.at_s, worker: w.id, address: w.address, event: e.event, reason: e.reason || "" });
    }
  }
  memberEvents.sort((a, b) => a.at_s - b.at_s || a.worker - b.worker);
  const eventColour = { lost: "#b91c1c", left: "#a16207", joined: "#15803d" };
  // A vertical dashed line at each event's time, labelled at the top, on every time chart.
  const eventMarks = {
    id: "stampedeMemberEvents",
    afterDatasetsDraw(chart) {
      const x = chart.scales.x;
      const area = chart.chartArea;
      const ctx = chart.ctx;
      const drawn = [];
      for (const e of memberEvents) {
        if (!isNum(e.at_s) || e.at_s < x.min || e.at_s > x.max) continue;
        const px = x.getPixelForValue(e.at_s);
        ctx.save();
        ctx.strokeStyle = eventColour[e.event] || "#334155";
        ctx.fillStyle = ctx.strokeStyle;
        ctx.lineWidth = 2;
        ctx.setLineDash([5, 3]);
        ctx.beginPath();
        ctx.moveTo(px, area.top);
        ctx.lineTo(px, area.bottom);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.font = "11px system-ui, sans-serif";
        // Staggered, so that the labels of close events do not overwrite each other.
        ctx.fillText(e.event + " " + e.address, Math.min(px + 3, area.right - 90),
          area.top + 11 + 12 * (drawn.length % 3));
        ctx.restore();
        drawn.push({ at_s: e.at_s, event: e.event, worker: e.worker, x: px });
      }
      chart.$memberEventMarks = drawn; // for tests: what was marked where
    },
  };

  // --- charts over time ----------------------------------------------------------------------
  const charts = [];
  const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#a16207", "#64748b"];
  function points(column) {
    const xs = series.elapsed_s || [];
    const ys = series[column] || [];
    const out = new Array(xs.length);
    for (let i = 0; i < xs.length; i++) out[i] = { x: xs[i], y: ys[i] };
    return out;
  }
  function dataset(label, pts, i, extra) {
    // Points are drawn only when there are few (a short run's one or two rows make no line);
    // `clip: 4` keeps a point on the axis whole.
    return Object.assign({ label: label, data: pts, borderColor: palette[i % palette.length],
      backgroundColor: palette[i % palette.length], borderWidth: 1.5,
      pointRadius: pts.length < 60 ? 3 : 0, tension: 0, clip: 4 }, extra || {});
  }
  function lineChart(holder, id, title, datasets, yTitle, extraScales, overTime) {
    const box = el("div", { class: "chart" }, el("canvas", { id: id }));
    holder.append(box);
    const scales = Object.assign({
      x: { type: "linear", min: 0, title: { display: true, text: "seconds into the run" } },
      y: { beginAtZero: true, title: { display: true, text: yTitle } },
    }, extraScales || {});
    charts.push(new Chart(box.firstChild, {
      type: "line",
      data: { datasets: datasets },
      options: {
        // A 24-hour soak is 86,400 points a series: no parsing, no animation, and Chart.js's
        // decimation (LTTB) draws about one point per pixel.
        parsing: false, normalized: true, animation: false, spanGaps: true, responsive: true,
        maintainAspectRatio: false, interaction: { mode: "nearest", axis: "x", intersect: false },
        plugins: { title: { display: true, text: title },
          decimation: { enabled: true, algorithm: "lttb", samples: 1000 } },
        scales: scales,
      },
      plugins: overTime === false ? [] : [eventMarks],
    }));
  }
  const timeCharts = section("Over time", "charts");
  const grid = el("div", { class: "charts" });
  timeCharts.append(grid);
  if (!(series.elapsed_s && series.elapsed_s.length)) {
    timeCharts.append(el("p", { class: "note" }, "No timeseries rows in this report."));
  }
  // One scale for both: errors read as the share of the requests they are.
  lineChart(grid, "chart-throughput", "Throughput and errors (per second)", [
    dataset("requests/s", points("rps"), 0),
    dataset("errors/s", points("errors"), 1),
  ], "per second");
  const latency = [
    dataset("p50", points("p50_ms"), 2), dataset("p90", points("p90_ms"), 0),
    dataset("p99", points("p99_ms"), 3), dataset("max", points("max_ms"), 1, { borderDash: [4, 3] }),
  ];
  if (open) {
    latency.push(dataset("service p50", points("service_p50_ms"), 5),
      dataset("service p99", points("service_p99_ms"), 6),
      dataset("schedule lag p99", points("lag_p99_ms"), 4));
  }
  lineChart(grid, "chart-latency", open ? "Latency (from the schedule), service time and schedule lag" : "Latency", latency, "ms");
  // The plan's level over time is load.stages as written (piecewise linear from 0).
  const plan = [{ x: 0, y: 0 }];
  let at = 0;
  for (const stage of load.stages || []) {
    if ("hold_s" in stage) { at += stage.hold_s; plan.push({ x: at, y: plan[plan.length - 1].y }); }
    else { at += stage.over_s; plan.push({ x: at, y: stage.to }); }
  }
  lineChart(grid, "chart-load", open ? "Target and achieved rate" : "Active users", open
    ? [dataset("target arrivals/s (plan)", plan, 7, { borderDash: [6, 3] }), dataset("requests/s (each arrival runs its flow)", points("rps"), 0)]
    : [dataset("planned users", plan, 7, { borderDash: [6, 3] }), dataset("active users", points("users"), 2, { stepped: true })],
  open ? "per second" : "users");
  lineChart(grid, "chart-dropped", "Dropped arrivals (per second)", [dataset("dropped", points("dropped"), 4)], "arrivals");

  // --- capacity curve ------------------------------------------------------------------------
  const cap = report.capacity;
  if (cap && typeof cap === "object") {
    const s = section("Capacity", "capacity");
    const slo = cap.slo || {};
    s.append(el("p", { id: "capacity-summary" }, "Highest passing rate: " + count(cap.max_passing_rate) +
      "/s; first failing rate: " + count(cap.first_failing_rate) + "/s; limited by: " + (cap.limited_by || "–") +
      ". SLO: p99 ≤ " + msText(slo.p99_ms) + " ms, error rate ≤ " + num(slo.error_rate, 4) + "."));
    const probes = cap.probes || [];
    const passed = (p) => ["pass", "passed", "ok"].includes(String(p.verdict).toLowerCase());
    const curve = probes.map((p) => ({ x: p.rate_achieved, y: (p.latency_ms || {}).p99 }));
    const xs = curve.map((p) => p.x).filter(isNum);
    const sloLine = isNum(slo.p99_ms) && xs.length
      ? [{ x: Math.min(0, ...xs), y: slo.p99_ms }, { x: Math.max(...xs) * 1.05, y: slo.p99_ms }] : [];
    const holder = el("div", { class: "charts" });
    s.append(holder);
    lineChart(holder, "chart-capacity", "Latency p99 against achieved rate", [
      dataset("p99 latency", curve, 0, { pointRadius: 4, pointBackgroundColor: probes.map((p) => passed(p) ? "#16a34a" : "#dc2626") }),
      dataset("SLO p99", sloLine, 1, { borderDash: [6, 3] }),
    ], "ms", undefined, false);
    charts[charts.length - 1].options.scales.x.title.text = "achieved rate (requests/s)";
    charts[charts.length - 1].update();
    s.append(table(["probe", "rate asked", "rate achieved", "p50 ms", "p90 ms", "p99 ms", "max ms", "error rate", "verdict", "reason"],
      probes.map((p) => {
        const l = p.latency_ms || {};
        return el("tr", {}, [el("td", {}, String(p.probe)), cell(count(p.rate_asked), p.rate_asked),
          cell(num(p.rate_achieved, 1), p.rate_achieved), cell(msText(l.p50), l.p50), cell(msText(l.p90), l.p90),
          cell(msText(l.p99), l.p99), cell(msText(l.max), l.max), cell(num(p.error_rate, 4), p.error_rate),
          el("td", { class: passed(p) ? "pass" : "fail" }, p.verdict), el("td", { class: "text" }, p.reason || "")]);
      })));
  }

  // --- workers -------------------------------------------------------------------------------
  {
    const s = section("Workers", "workers");
    const divergent = (report.workers || []).filter((w) => w.divergent);
    if (divergent.length) {
      s.append(el("ul", { class: "warnings", id: "divergent-workers" }, divergent.map((w) =>
        el("li", { class: "divergent" }, "Worker " + w.id + " (" + w.address + ") diverges from the rest of the cluster: " + w.divergent))));
    }
    s.append(table(["id", "address", "state", "requests", "errors", "p99 ms", "schedule lag p99 ms", "users", "threads",
      "clock offset ms", "lost or left", "divergent"],
    (report.workers || []).map((w) => el("tr", { id: "worker-" + w.id, class: w.divergent ? "divergent" : null }, [
      el("td", {}, String(w.id)), el("td", { class: "text" }, w.address), el("td", { class: "text" }, w.state),
      cell(count(w.requests), w.requests), cell(count(w.errors), w.errors), cell(msText(w.p99_ms), w.p99_ms),
      cell(msText(w.schedule_lag_p99_ms), w.schedule_lag_p99_ms), cell(count(w.users), w.users),
      cell(count(w.threads), w.threads), cell(num(w.clock_offset_ms, 3), w.clock_offset_ms),
      el("td", { class: "text" }, w.state === "lost" ? "lost at " + num(w.lost_at_s, 1) + " s: " + (w.why || "")
        : (w.state === "left" ? (w.why || "left") : "")),
      el("td", { class: "text divergent-reason" }, w.divergent ? w.divergent : ""),
    ]))));
  }

  if (memberEvents.length) {
    const s = section("Workers leaving and joining", "worker-events");
    s.append(el("p", { class: "note" }, "Each time a worker was lost and each time one joined the run in progress " +
      "(halt.on_worker_lost: rejoin, master --max-workers); marked on the charts over time."));
    s.append(table(["time s", "worker", "event", "reason"], memberEvents.map((e) => el("tr", { class: "member-event" }, [
      cell(num(e.at_s, 1), e.at_s), el("td", { class: "text", "data-value": JSON.stringify(e.worker) }, e.worker + " (" + e.address + ")"),
      el("td", { class: "text event-" + e.event }, e.event), el("td", { class: "text" }, e.reason),
    ]))));
  }

  // --- halt timeline -------------------------------------------------------------------------
  const halt = report.halt;
  if (halt) {
    const s = section("Halt timeline", "halt");
    s.append(el("p", {}, "Halted: " + halt.reason + (halt.step ? " in step \"" + halt.step + "\"" : "") +
      (halt.error_kind ? " (" + halt.error_kind + ")" : "") + " at " + num(halt.at_s, 3) + " s into the run; " +
      count(halt.cancelled) + " requests cancelled in flight" +
      (isNum(halt.requests_sent_after_first_error) ? "; " + count(halt.requests_sent_after_first_error) +
        " requests sent after the first error (clock error up to " + msText(halt.clock_error_ms) + " ms)" : "") + "."));
    const events = [{ what: halt.reason === "first_error" ? "first error (the failing response)" : "halt decided", ms: 0 }];
    if (isNum(halt.halt_sent_ms)) events.push({ what: "halt sent to every worker", ms: halt.halt_sent_ms });
    for (const w of report.workers || []) {
      if (isNum(w.stop_ms)) events.push({ what: "worker " + w.id + " (" + w.address + ") sent its last request", ms: w.stop_ms });
    }
    if (isNum(halt.all_stopped_ms)) events.push({ what: "every worker stopped (last final stats)", ms: halt.all_stopped_ms });
    events.sort((a, b) => a.ms - b.ms);
    s.append(table(["event", "ms after the trigger"], events.map((e) =>
      el("tr", {}, [el("td", {}, e.what), cell(msText(e.ms), e.ms)]))));
    const holder = el("div", { class: "charts" });
    s.append(holder);
    const box = el("div", { class: "chart" }, el("canvas", { id: "chart-halt" }));
    holder.append(box);
    charts.push(new Chart(box.firstChild, {
      type: "bar",
      data: { labels: events.map((e) => e.what), datasets: [{ label: "ms after the trigger", data: events.map((e) => e.ms), backgroundColor: "#c0392b" }] },
      options: { indexAxis: "y", animation: false, maintainAspectRatio: false, plugins: { legend: { display: false }, title: { display: true, text: "Halt timeline (ms)" } } },
    }));
  }

  // --- thresholds ----------------------------------------------------------------------------
  const thresholds = report.thresholds || [];
  if (thresholds.length) {
    const s = section("Thresholds", "thresholds");
    s.append(table(["threshold", "window", "abort", "value", "verdict"], thresholds.map((t) => el("tr", {}, [
      el("td", { class: "text" }, t.expr), el("td", {}, t.window_s ? t.window_s + " s" : "whole run"),
      el("td", {}, t.abort ? "yes" : "no"), cell(t.value === null ? "no data" : num(t.value, 3), t.value),
      el("td", { class: t.passed ? "pass" : "fail" }, t.passed ? "pass" : "fail"),
    ]))));
  }

  main.append(el("p", { class: "note" }, "Stampede report.html: every figure comes from the report.json and " +
    "timeseries rows embedded in this page. Charts: Chart.js " + (Chart.version || "") + "."));
  // For tests and screenshots: the page is complete.
  window.stampedeCharts = charts;
  document.body.setAttribute("data-rendered", String(charts.length));
})();
