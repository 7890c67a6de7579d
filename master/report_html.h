// report.html: one self-contained page (no network needed) that shows a run: outcome, first
// error, summary tables, charts over time, workers, halt timeline, thresholds and, for a
// capacity search, the capacity curve. The page embeds report.json's own JSON and the
// timeseries rows, and its script (master/report_page/report.js) draws everything from them
// with Chart.js (Debian's libjs-chart.js, compiled in): nothing is computed twice. Any thread.
#pragma once

#include "master/run_result.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace stampede::master {

// The rows as columns ({"elapsed_s": [...], "rps": [...], ...}): compact for 86,400 rows.
nlohmann::json seriesJson(const std::vector<SeriesPoint>& series);

// The page, from report.json's JSON and seriesJson().
std::string reportHtml(const nlohmann::json& report, const nlohmann::json& series);

// `master --render-html IN OUT` (hidden; for tests and for pages of hand-made reports): IN is
// a report.json, or {"report": ..., "series": ...}. Returns an error message or "".
std::string renderHtmlFile(const std::string& in_path, const std::string& out_path);

} // namespace stampede::master
