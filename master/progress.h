// The live line, printed once a second with what arrived in that second, and the run's
// cumulative stats book. timeseries.csv is IntervalRows' (by when the requests happened).
// Control thread only.
#pragma once

#include "common/stats.h"
#include "master/cli.h"
#include "master/divergence.h"

#include <cstddef>
#include <string_view>

namespace stampede::master {

class Progress {
public:
  Progress(const CliOptions& cli, size_t steps, double total_s);

  // What arrived since the last tick; merged into book() by tick().
  common::StatsBook& interval() { return interval_; }
  common::StatsBook& book() { return cumulative_; }
  const common::StatsBook& book() const { return cumulative_; }

  // Once a second, and once at the end: merges the interval and prints the live line, with
  // `membership` (workers that left or joined since the last tick, "lost H:P") after it.
  void tick(double elapsed_s, double interval_s, int users, int alive, int total,
            std::string_view membership = {});
  void end();

  // The last tick's interval, all steps together, and its length: for /metrics.
  // Each worker's figures against the rest's; its divergent ones end the live line.
  Divergence& divergence() { return divergence_; }
  const Divergence& divergence() const { return divergence_; }

  const common::StepStats& lastInterval() const { return last_interval_; }
  double lastIntervalS() const { return last_interval_s_; }

private:
  bool quiet_;
  bool tty_;
  double total_s_;
  common::StatsBook cumulative_;
  common::StatsBook interval_;
  common::StepStats last_interval_;
  double last_interval_s_ = 0;
  Divergence divergence_;
};

} // namespace stampede::master
