// How the master divides the scenario's virtual users among its workers: in proportion to
// each worker's capacity (weight times cores), deterministically, so that --dry-run shows the
// split a real run will use. Pure function, any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace stampede::master {

struct WorkerShare {
  uint32_t users = 0; // virtual users this worker runs
};

// Largest-remainder split: each worker gets the floor of its exact quota, and the users left
// over go one each to the largest remainders, the lower index first on a tie. The shares
// always sum to exactly `users`. A worker may get 0 users, when users < the number of workers
// (or its capacity is a sliver of the total): it still takes part in the run but sends no
// load. A worker of capacity 0 gets nothing. (Which of the cluster's users a worker runs is
// common::clusterUsersOf's business: they interleave across workers.)
// Throws std::invalid_argument when a capacity is negative or not finite, or when users > 0
// and the capacities sum to 0 (or there are none).
std::vector<WorkerShare> splitUsers(uint32_t users, std::span<const double> capacity);

} // namespace stampede::master
