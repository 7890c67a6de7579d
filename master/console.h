// What the master prints: the live line once a second, the first-error block and the final
// summary table. Formatting only; the control thread calls these.
#pragma once

#include "master/run_result.h"

#include <string>

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

// One line, no newline. With `bar`, a progress bar for a terminal.
std::string formatLiveLine(const LiveFigures& f, bool bar);
// The error in full: where, what, headers, the body excerpt indented.
std::string formatFirstError(const common::ErrorContext& e, common::SteadyTime t0);
// Per step and in total: requests, rps, errors, p50/p90/p99/p99.9/max in ms.
std::string formatSummary(const RunResult& r);

} // namespace stampede::master
