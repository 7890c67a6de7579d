#include "master/plan.h"

#include "common/config_error.h"
#include "common/load_plan.h"
#include "master/shares.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <numeric>

namespace stampede::master {

namespace {

// splitUsers counts in 32 bits; larger totals are split in proportion and the rounding
// remainder given to the first workers, which keeps the sum exact.
std::vector<uint64_t> split(uint64_t total, std::span<const double> capacity) {
  std::vector<uint64_t> out(capacity.size(), 0);
  if (total <= std::numeric_limits<uint32_t>::max()) {
    const auto shares = splitUsers(uint32_t(total), capacity);
    for (size_t i = 0; i < shares.size(); ++i)
      out[i] = shares[i].users;
    return out;
  }
  const double sum = std::accumulate(capacity.begin(), capacity.end(), 0.0);
  uint64_t given = 0;
  for (size_t i = 0; i < capacity.size(); ++i) {
    out[i] = uint64_t(double(total) * capacity[i] / sum);
    given += out[i];
  }
  for (size_t i = 0; given < total && !out.empty(); i = (i + 1) % out.size(), ++given)
    ++out[i];
  return out;
}

} // namespace

namespace {

// One group's shares, and which workers it loads.
std::vector<GroupPlan> planGroup(const common::LoadGroup& group, std::span<const double> capacity,
                                 std::vector<bool>& loaded) {
  const auto& load = group.load;
  const bool open = group.open();
  std::vector<GroupPlan> plans(capacity.size());
  const double sum = std::accumulate(capacity.begin(), capacity.end(), 0.0);
  std::vector<bool> mine(plans.size(), false);
  if (open) {
    const auto caps = split(group.vuCount(), capacity);
    uint64_t first_vu = group.first_vu;
    for (size_t i = 0; i < plans.size(); ++i) {
      plans[i].rate_share = sum > 0 ? capacity[i] / sum : 0;
      plans[i].max_in_flight = caps[i];
      plans[i].first_vu = first_vu;
      first_vu += caps[i];
      mine[i] = plans[i].rate_share > 0 && caps[i] > 0;
    }
  } else {
    const auto users = splitUsers(uint32_t(std::max(0, load.users)), capacity);
    for (size_t i = 0; i < plans.size(); ++i) {
      plans[i].users = users[i].users;
      mine[i] = users[i].users > 0;
    }
  }
  if (load.iterations > 0) {
    // In proportion to what runs them: users in the closed model (a worker without users
    // would leave its iterations undone), capacity in the open model.
    std::vector<double> weights(capacity.begin(), capacity.end());
    if (!open)
      for (size_t i = 0; i < plans.size(); ++i)
        weights[i] = plans[i].users;
    const auto iterations = split(load.iterations, weights);
    for (size_t i = 0; i < plans.size(); ++i) {
      plans[i].iterations = iterations[i];
      // A worker with no iteration to run carries no load (0 would mean "no limit").
      if (iterations[i] == 0) {
        mine[i] = false;
        plans[i].users = 0;
        plans[i].rate_share = 0;
      }
    }
  }
  for (size_t i = 0; i < plans.size(); ++i)
    loaded[i] = loaded[i] || mine[i];
  return plans;
}

} // namespace

std::vector<WorkerPlan> planWorkers(const common::Scenario& scenario,
                                    std::span<const double> capacity) {
  std::vector<WorkerPlan> plans(capacity.size());
  if (plans.empty())
    return plans;

  // Which workers carry load: in the open model those with capacity, in the closed model
  // those that get users (of any group).
  std::vector<bool> loaded(plans.size(), false);
  const auto groups = common::loadGroupsOf(scenario);
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto shares = planGroup(groups[g], capacity, loaded);
    for (size_t i = 0; i < plans.size(); ++i) {
      if (g > 0) {
        plans[i].other_groups.push_back(shares[i]);
        continue;
      }
      plans[i].users = shares[i].users;
      plans[i].rate_share = shares[i].rate_share;
      plans[i].max_in_flight = shares[i].max_in_flight;
      plans[i].first_vu = shares[i].first_vu;
      plans[i].iterations = shares[i].iterations;
    }
  }

  // What one worker can hold: refused here, with the remedy, rather than by a worker that
  // runs out of memory or file descriptors once the run has started.
  for (const auto& plan : plans) {
    uint64_t held = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      const GroupPlan share = groupPlan(plan, g);
      held += groups[g].open() ? share.max_in_flight : share.users;
    }
    if (held <= uint64_t(common::kMaxUsersPerWorker))
      continue;
    const bool open = groups.size() == 1 && groups[0].open();
    const bool mixed = groups.size() > 1;
    throw common::ConfigError(
        scenario.file, 0, 0, mixed ? "flows" : (open ? "load.max_in_flight" : "load.users"),
        fmt::format("{} {} on one worker, more than the {} a worker holds (each needs a "
                    "connection and its buffers): add workers (--workers) or lower {}",
                    held,
                    mixed  ? "virtual users and iterations in flight"
                    : open ? "iterations in flight"
                           : "virtual users",
                    common::kMaxUsersPerWorker,
                    mixed ? "the flows' loads" : (open ? "max_in_flight" : "users")));
  }
  for (auto& plan : plans)
    plan.files = scenario.files;
  const size_t loaded_count = size_t(std::count(loaded.begin(), loaded.end(), true));
  for (const auto& feeder : scenario.data) {
    const size_t rows = feeder.rows.size();
    if (feeder.split == common::Feeder::Split::Shared) {
      for (auto& plan : plans)
        plan.feeder_rows.push_back(rows);
      continue;
    }
    // per_worker: only the workers that carry load get rows, in proportion to capacity.
    std::vector<double> weights(capacity.begin(), capacity.end());
    for (size_t i = 0; i < weights.size(); ++i)
      if (!loaded[i])
        weights[i] = 0;
    if (rows < loaded_count)
      throw common::ConfigError(
          scenario.file, feeder.where.line, feeder.where.column, "data." + feeder.name,
          std::to_string(rows) + " row" + (rows == 1 ? "" : "s") + " cannot be split across " +
              std::to_string(loaded_count) +
              " workers (split: per_worker gives each a row of its own); use split: shared");
    std::vector<uint64_t> counts(plans.size(), 0);
    if (loaded_count > 0)
      counts = split(rows, weights);
    // Every loaded worker needs at least one row: take from the largest slice.
    for (size_t i = 0; i < plans.size(); ++i) {
      if (!loaded[i] || counts[i] > 0)
        continue;
      const auto largest = size_t(std::max_element(counts.begin(), counts.end()) - counts.begin());
      --counts[largest];
      ++counts[i];
    }
    size_t at = 0;
    for (size_t i = 0; i < plans.size(); ++i) {
      std::vector<std::vector<std::string>> slice(feeder.rows.begin() + long(at),
                                                  feeder.rows.begin() + long(at + counts[i]));
      at += counts[i];
      plans[i].feeder_rows.push_back(counts[i]);
      // A worker that runs no load keeps the whole file (the loader wants rows) but never
      // reads it, so no row is used twice.
      if (!slice.empty())
        plans[i].files[feeder.file] = common::writeCsv(feeder.columns, slice);
    }
  }
  return plans;
}

std::vector<uint32_t> clusterUsers(std::span<const WorkerPlan> plans) {
  return clusterUsers(plans, 0);
}

std::vector<uint32_t> clusterUsers(std::span<const WorkerPlan> plans, size_t group) {
  std::vector<uint32_t> users;
  for (const auto& plan : plans)
    users.push_back(groupPlan(plan, group).users);
  return users;
}

GroupPlan groupPlan(const WorkerPlan& plan, size_t group) {
  if (group > 0)
    return group - 1 < plan.other_groups.size() ? plan.other_groups[group - 1] : GroupPlan{};
  return GroupPlan{plan.users, plan.rate_share, plan.max_in_flight, plan.first_vu, plan.iterations};
}

uint32_t totalUsers(const WorkerPlan& plan) {
  uint32_t users = plan.users;
  for (const auto& g : plan.other_groups)
    users += g.users;
  return users;
}

} // namespace stampede::master
