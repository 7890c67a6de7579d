// Each worker's part of a run: its share of the users (closed model) or of the arrival rate
// and in-flight cap (open model), of the iteration limit, and of every per_worker data feeder,
// all in proportion to the workers' capacities (weight times threads). Deterministic, so that
// --dry-run prints the plan a real run uses. Pure functions, any thread.
#pragma once

#include "common/scenario.h"

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace stampede::master {

// One worker's share of one load group (common::Scenario::groups).
struct GroupPlan {
  uint32_t users = 0;         // closed model: peak virtual users
  double rate_share = 0;      // open model: fraction of the cluster's arrival rate
  uint64_t max_in_flight = 0; // open model
  uint64_t first_vu = 0;      // open model: its {{vu}} numbers start here
  uint64_t iterations = 0;    // its share of the group's iterations; 0 when there is no limit
};

struct WorkerPlan {
  // The first load group's share (the only one without per-flow load:), then the others'.
  uint32_t users = 0;                  // closed model: peak virtual users
  double rate_share = 0;               // open model: fraction of the cluster's arrival rate
  uint64_t max_in_flight = 0;          // open model
  uint64_t first_vu = 0;               // open model: its {{vu}} numbers start here
  uint64_t iterations = 0;             // its share of load.iterations; 0 when there is no limit
  std::vector<GroupPlan> other_groups; // Scenario::groups[1...]
  std::vector<size_t> feeder_rows;     // rows of each feeder it gets (all rows when shared)
  // After a re-plan mid-run (master/replan.h): exactly these cluster users, in place of its
  // part of the cluster's (Prepare.own_users).
  std::optional<std::vector<uint64_t>> own_users;
  // After a re-plan mid-run, by feeder: the rows (indexes into the feeder's) of its per_worker
  // slice, in the order it draws them. Empty before: the slices are contiguous, in index order.
  std::vector<std::vector<uint32_t>> feeder_ids;
  // What is shipped in Prepare.files: the scenario's files, with a per_worker feeder's CSV
  // cut down to this worker's slice.
  std::map<std::string, std::string> files;
};

// Throws ConfigError (at the feeder's line) when a per_worker feeder has fewer rows than
// workers that run load, and std::invalid_argument for unusable capacities.
std::vector<WorkerPlan> planWorkers(const common::Scenario& scenario,
                                    std::span<const double> capacity);

// Every worker's users, by worker index: what each needs to work out its own (Prepare).
std::vector<uint32_t> clusterUsers(std::span<const WorkerPlan> plans);
// The same for Scenario::groups[group] (1...).
std::vector<uint32_t> clusterUsers(std::span<const WorkerPlan> plans, size_t group);
// A worker's share of Scenario::groups[group], the first one included.
GroupPlan groupPlan(const WorkerPlan& plan, size_t group);
// A worker's virtual users over every closed group.
uint32_t totalUsers(const WorkerPlan& plan);

} // namespace stampede::master
