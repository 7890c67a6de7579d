// The load schedule of a scenario as numbers: the level (users or arrivals per second) at any
// time, the open model's arrival times, and which of the cluster's virtual users a worker
// runs. Pure functions over LoadSpec::stages; the master (--dry-run, shares) and the engine
// use the same ones, so that the plan printed is the plan run.
#pragma once

#include "common/scenario.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace stampede::common {

class LoadCurve {
public:
  // `scale` multiplies every level: a worker's fraction of the cluster's rate.
  explicit LoadCurve(const std::vector<Stage>& stages, double scale = 1.0);

  microseconds total() const { return total_; }
  // The level at `t` after the start (linear within a ramping stage); 0 after the end.
  double levelAt(microseconds t) const;
  // Arrivals due by `t`: the integral of the level, the level read as arrivals per second.
  double arrivalsBy(microseconds t) const;
  // When arrivalsBy() reaches `n` (n >= 0); std::nullopt when that is after the end.
  std::optional<microseconds> timeOfArrival(double n) const;
  // The first time at or after `from` when the level is above `level`; nullopt: never again.
  // (A closed-model user numbered c runs while levelAt() > c.)
  std::optional<microseconds> nextTimeAbove(double level, microseconds from) const;

private:
  struct Segment {
    double t0_s, t1_s;  // seconds from the start
    double from, to;    // levels at t0 and t1
    double arrivals_t0; // arrivalsBy(t0)
  };
  std::vector<Segment> segments_;
  microseconds total_{0};
};

// Smooth weighted round robin over the workers' user counts: for each of the cluster's
// sum(users) virtual users, in the order they start, the worker that runs it. Returns the
// cluster numbers (0-based) of worker `worker`'s users, ascending. With equal counts, worker w
// gets w, w+n, w+2n...: a cluster-wide ramp interleaves workers instead of taking them in turn.
std::vector<uint64_t> clusterUsersOf(uint32_t worker, std::span<const uint32_t> users);

// `--duration D`: without written stages, D replaces load.duration (the hold after the ramp);
// with stages, the run ends after D (the stage that crosses D is cut where it is then).
void applyDuration(LoadSpec& load, microseconds d);
// The same for every load of the scenario: the scenario-wide one and each flow's own.
void applyDuration(Scenario& scenario, microseconds d);

// The messaging start barrier (master/start_barrier.h). How many steps of `kind` a list holds,
// loops' steps counted once.
size_t countSteps(const std::vector<Step>& steps, Step::Kind kind);
// The flow a closed-model user of `group` runs for its whole life: the group's only flow, or its
// users: flow; nullptr when it picks one by weight each iteration (or the group is open).
const Flow* lifeFlow(const Scenario& scenario, const LoadGroup& group, uint64_t vu);
// Scenario::groups, or for a Scenario built by hand without them (tests), one group: its load
// over every flow.
std::vector<LoadGroup> loadGroupsOf(const Scenario& scenario);
// Whether a run has a start barrier: messaging.start_barrier is not off, some flow publishes,
// and some closed-model flow whose users keep it for life subscribes.
bool needsStartBarrier(const Scenario& scenario);

// What a stages list means, in one line (for --dry-run and the report).
std::string describeStages(const LoadSpec& load);

} // namespace stampede::common
