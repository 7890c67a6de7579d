// What `/metrics` serves (--metrics-listen): the run in the Prometheus text exposition format
// (version 0.0.4). Written by hand: the format is a few lines of text a series, and Debian has
// no C++ Prometheus client library. Built on the control thread once a second (and once at the
// end) from the merged cluster stats; any thread may call it.
#pragma once

#include "common/scenario.h"
#include "common/stats.h"

#include <cstdint>
#include <optional>
#include <string>

namespace stampede::master {

// The run as /metrics shows it at one moment.
struct MetricsState {
  const common::Scenario* scenario = nullptr;
  uint64_t run_id = 0;
  const common::StatsBook* book = nullptr; // cumulative since the start
  double elapsed_s = 0;
  uint32_t active_users = 0;
  double achieved_rps = 0;       // over the last second
  double schedule_lag_p99_s = 0; // over the last second (open model)
  int workers_up = 0;            // running (during the run) or done (after it)
  int workers_lost = 0;
  std::optional<int> exit_code; // set once the run has ended
};

// The exposition text (Content-Type: text/plain; version=0.0.4).
std::string metricsText(const MetricsState& state);

// Latency and service-time histogram bucket bounds (seconds), as `le` labels.
inline constexpr double kLatencyBucketsS[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,   0.5,   1,      2.5,   5,    10,    30,   60};

} // namespace stampede::master
