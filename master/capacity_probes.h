// A capacity run's probes on the live cluster: sends each probe's rate (SetRate, every worker
// its share), adds the workers' per-second Stats into the probe they belong to, judges a probe
// once every running worker has reported past its end, asks the CapacitySearch for the next
// rate, and ends the run (RunContext::end_at) when the search is over. A probe's judged part
// begins on a whole second from t0 (a stats cut; the probe starts `warmup` before it) and its
// figures are the cuts up to the first at or after its end; the next probe starts after that
// cut, so each Stats delta lies in one probe. After a failing probe the next waits for the
// workers' requests in flight to drain (at most http.timeout + 1 s). Control thread only.
#pragma once

#include "common/error_context.h"
#include "common/stats.h"
#include "master/capacity_result.h"
#include "master/capacity_search.h"
#include "master/run_context.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace stampede::master {

class CapacityProbes {
public:
  explicit CapacityProbes(RunContext& run);

  // Right after Start: the first probe begins at t0.
  void begin();
  // A worker's delta (Stats), cut at `cut` on the master's clock.
  void onStats(const WorkerLink& link, common::SteadyTime cut, const wire::Stats& stats);
  // A worker's error report: kept in full as its probe's first error when it is the first.
  void onError(const common::ErrorContext& error);
  // Each turn of the run loop: judges a finished probe, starts the next, ends the search.
  void poll(common::SteadyTime now);

  // The probe whose time holds second `second` of the run (from t0 + second - 1 to t0 +
  // second), for timeseries.csv; 0 between probes.
  uint32_t probeOfSecond(int64_t second) const;
  // `halted`: the run stopped before the search ended (the search's answer is then left out).
  CapacityResult result(bool halted) const;

private:
  struct Probe {
    ProbeResult result;
    int64_t start_us = 0, end_us = 0; // the probe's arrivals, from t0
    // Its judged deltas: those cut at seconds judged_from_s + 1 to end_s from t0 (end_s: the
    // first whole second at or after end_us).
    int64_t judged_from_s = 0, end_s = 0;
    common::StatsBook book;       // the judged seconds, merged
    std::vector<double> busy_sum; // by worker: load_busy over them
    std::vector<int> busy_seconds;
    bool judged = false;
  };
  void schedule(double rate, common::SteadyTime now);
  bool reportedPast(int64_t second) const;
  bool drained() const;
  void judge(Probe& probe);
  void finish();

  RunContext& run_;
  const common::CapacitySpec& spec_;
  CapacitySearch search_;
  std::vector<Probe> probes_;
  std::vector<int64_t> last_second_; // by worker index: its last delta's cut second
  std::optional<common::SteadyTime> drain_until_;
  bool ended_ = false;
};

} // namespace stampede::master
