// What a capacity run found: every probe with its figures and verdict, and the search's
// answer (report.json's `capacity` object, README "report.json").
#pragma once

#include "common/error_context.h"
#include "common/scenario.h"
#include "master/capacity_search.h"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

struct PercentilesMs {
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};

struct ProbeResult {
  uint32_t probe = 0; // 1-based
  double rate_asked = 0;
  double rate_achieved = 0; // arrivals whose first request completed in the judged part, per s
  double start_ms = 0;      // the probe's arrivals, since t0: capacity.probe long
  double end_ms = 0;
  double judged_from_ms = 0;                    // start + warmup: a whole second (a stats cut)
  PercentilesMs latency_ms, service_ms, lag_ms; // the judged part, every worker merged
  uint64_t requests = 0;
  uint64_t errors = 0;
  double error_rate = 0;
  std::map<std::string, uint64_t> errors_by_kind;
  uint64_t dropped = 0;
  // The busiest worker's load threads over the judged part: CPU time / wall time (0 to 1).
  double generator_busy = 0;
  ProbeVerdict verdict = ProbeVerdict::Inconclusive;
  std::string reason;
  std::optional<common::ErrorContext> first_error; // the probe's first, from start to end
};

struct CapacityResult {
  common::CapacitySpec spec;
  std::vector<ProbeResult> probes;
  std::optional<double> max_passing_rate;
  std::optional<double> first_failing_rate;
  std::optional<LimitedBy> limited_by; // nullopt: the run halted before the search ended
  std::optional<uint64_t> estimated_workers_needed; // limited by the generators
  int exit_code = 0;
};

} // namespace stampede::master
