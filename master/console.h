// What the master prints: the live line once a second, the first-error block and the final
// summary table. Formatting only; the control thread calls these.
#pragma once

#include "master/run_result.h"

#include <string>
#include <string_view>

namespace stampede::master {

struct LiveFigures {
  double elapsed_s = 0;
  double total_s = 0;
  int users = 0;
  double rps = 0;    // over the last interval
  double p50_ms = 0; // over the last interval
  double p99_ms = 0;
  uint64_t errors = 0; // since the start
  uint64_t requests = 0;
  int workers_alive = 0;
  int workers_total = 0;
};

// `text` safe to print on a terminal: control characters (C0, DEL and C1) and bytes that are
// not UTF-8 written as \n, \t, \xHH or \u0080, so that a name in a scenario or a header from
// a target cannot move the cursor, clear the screen or retitle the window. Other text, UTF-8
// included, is unchanged. With `keep_lines`, line feeds and tabs stay (a body excerpt).
std::string printable(std::string_view text, bool keep_lines = false);

// One line, no newline. With `bar`, a progress bar for a terminal.
std::string formatLiveLine(const LiveFigures& f, bool bar);
// The error in full: where, what, headers, the body excerpt indented.
std::string formatFirstError(const common::ErrorContext& e, common::SteadyTime t0);
// Per step and in total: requests, rps, errors, p50/p90/p99/p99.9/max in ms; then the open
// model's service time and lag, errors by kind, the halt, each divergent worker and why (as
// report.json's workers[].divergent), thresholds and the outcome.
std::string formatSummary(const RunResult& r);

} // namespace stampede::master
