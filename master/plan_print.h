// --dry-run's output: the plan of a run, each worker's share, without running it.
#pragma once

#include "common/scenario.h"
#include "master/cluster.h"
#include "master/plan.h"

#include <vector>

namespace stampede::master {

// Prints the scenario's load and flows and each joined worker's share to stdout.
void printPlan(const common::Scenario& scenario, Cluster& cluster,
               const std::vector<WorkerPlan>& plans);

} // namespace stampede::master
