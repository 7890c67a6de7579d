// Shares re-planned mid-run for a worker that joins beyond --expect-workers (master
// --max-workers): every place keeps its index, the newcomer takes the next one, and the
// cluster's total stays the scenario's. Closed model: each place hands the newcomer its
// highest-numbered users above its new share (they end after their current iteration), so
// that every user number is run by exactly one worker. Open model: the rate and max_in_flight
// split anew by capacity; the newcomer numbers its {{vu}} from `next_first_vu`, above every
// block given out so far. Pure functions, any thread.
#pragma once

#include "common/scenario.h"
#include "master/plan.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace stampede::master {

struct Replan {
  std::vector<WorkerPlan> plans;                // every place's new share, the newcomer's last
  std::vector<std::vector<uint64_t>> retire;    // by existing place: users it hands over
  std::vector<uint32_t> cluster_users;          // every place's users after the re-plan
  uint64_t next_first_vu = 0;                   // above the newcomer's block
  std::vector<std::vector<uint64_t>> keep_rows; // by existing place and feeder: rows it keeps
  std::string refused;                          // why it cannot be done; "" when it can
};

// Why a worker cannot join beyond --expect-workers in this run ("" when it can): shares that
// cannot be re-planned mid-run (a per_worker feeder drawn in shuffle or random order, an
// iterations budget, a capacity search).
std::string whyNoReplan(const common::Scenario& scenario);

// The users place `index` runs: its plan's own list after a re-plan, else its part of
// `cluster_users`.
std::vector<uint64_t> usersOf(const WorkerPlan& plan, uint32_t index,
                              std::span<const uint32_t> cluster_users);

// `capacity`: every existing place's (weight times threads), then the newcomer's. `reached`,
// by place and feeder: how far into its slice of each per_worker feeder the place may have
// drawn by the time it hears of the re-plan; of the rows beyond, each place hands the
// newcomer the newcomer's fraction of the capacity, from the end of its slice (Replan::refused
// when a feeder has none left to hand over).
Replan replanForNewcomer(const common::Scenario& scenario, std::span<const WorkerPlan> plans,
                         std::span<const uint32_t> cluster_users, std::span<const double> capacity,
                         uint64_t next_first_vu,
                         std::span<const std::vector<uint64_t>> reached = {});

// How far a running place may have drawn by the time a Reshare reaches it: its last position
// plus twice its last second's draws (the second since, and the Reshare's way).
std::vector<uint64_t> feederReach(std::span<const uint64_t> positions,
                                  std::span<const uint64_t> last_step);

// Where a feeder's cursor starts for a worker taking a place in a run in progress: past the
// place's last reported position by half again its last second's draws, which covers what the
// lost worker drew after its last Stats (never reported): a row may go unused, none is used
// twice.
std::vector<uint64_t> feederStart(std::span<const uint64_t> positions,
                                  std::span<const uint64_t> last_step);

} // namespace stampede::master
