// Judges the scenario's thresholds and error-rate policy on merged cluster stats: once a
// second for those that abort the run, and at the end for all. Windows are kept as a ring of
// compact per-second records, so memory is bounded by the longest window, not the run.
// Control thread only.
#pragma once

#include "common/scenario.h"
#include "common/stats.h"
#include "stampede.pb.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

struct ThresholdVerdict {
  const common::Threshold* threshold = nullptr;
  std::optional<double> value; // nullopt: no data in scope (counts as passed)
  bool passed = true;
};

class ThresholdJudge {
public:
  explicit ThresholdJudge(const common::Scenario& scenario);

  // One second of merged stats (a delta), in order.
  void addInterval(const common::StatsBook& interval, double seconds);
  // The first `abort: true` threshold breached over its window, if any.
  std::optional<ThresholdVerdict> abortBreach() const;
  // halt.on_error {rate, window}: the observed rate when it is reached, else nullopt.
  std::optional<double> errorRateBreach() const;
  // Every threshold over its window (or the whole run) at the end.
  std::vector<ThresholdVerdict> judgeAll() const;

private:
  // What one second contributed to one scope (a step, or every step).
  struct Second {
    uint64_t requests = 0;
    uint64_t errors = 0;
    uint64_t dropped = 0;
    double seconds = 0;
    wire::Histogram latency; // the compact run-length form, a few KB a second
  };
  struct Scope {
    std::string step; // empty: all steps
    int step_index = -1;
    size_t window_seconds = 0; // 0: whole run (kept in `whole`)
    std::deque<Second> ring;
    common::StepStats whole;
    double whole_seconds = 0;
  };

  ThresholdVerdict judge(const common::Threshold& t, const Scope& scope) const;
  Scope& scopeFor(const std::string& step, size_t window_seconds);
  const Scope* findScope(const std::string& step, size_t window_seconds) const;
  static size_t windowSeconds(std::chrono::microseconds window);

  const common::Scenario& scenario_;
  std::vector<Scope> scopes_;
};

} // namespace stampede::master
