// The phases that bring the workers to the start line, in order: handshake (versions and
// clock offsets), shares (each worker's part of the load; --dry-run stops there), prepare (ship
// the scenario, wait for every Ready) and start (one start time for all). Each returns the
// exit code when the run ends there, after printing why. Control thread only.
#pragma once

#include "master/run_context.h"

#include <optional>

namespace stampede::master {

// Every worker at once; afterwards run.cluster's links say which joined.
std::optional<int> handshake(RunContext& run);
// Fills run.joined, run.plans and run.cluster_users; refuses a Prepare too large to ship.
std::optional<int> shareOut(RunContext& run);
// Welcome and Prepare to every joined worker, then waits for each one's Ready.
std::optional<int> prepare(RunContext& run);
// The Prepare envelope for one worker's share: the scenario, its overrides and env() values,
// and the data files cut to that worker. (Also what a worker rejoining a run is sent.)
wire::Envelope prepareFor(const common::Scenario& scenario, const CliOptions& cli,
                          const WorkerPlan& plan,
                          const std::vector<std::vector<uint32_t>>& cluster_users);
// Sends Start with run.t0, sets run.t0 and run.end_at, and prints the run's first line.
void start(RunContext& run);

} // namespace stampede::master
