#include "master/plan.h"

#include "common/config_error.h"
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

std::vector<WorkerPlan> planWorkers(const common::Scenario& scenario,
                                    std::span<const double> capacity) {
  const auto& load = scenario.load;
  const bool open = load.model == common::LoadSpec::Model::Open;
  std::vector<WorkerPlan> plans(capacity.size());
  if (plans.empty())
    return plans;
  const double sum = std::accumulate(capacity.begin(), capacity.end(), 0.0);

  // Which workers carry load: in the open model those with capacity, in the closed model
  // those that get users.
  std::vector<bool> loaded(plans.size(), false);
  if (open) {
    const uint64_t cap = load.max_in_flight ? load.max_in_flight : common::kDefaultMaxInFlight;
    const auto caps = split(cap, capacity);
    uint64_t first_vu = 0;
    for (size_t i = 0; i < plans.size(); ++i) {
      plans[i].rate_share = sum > 0 ? capacity[i] / sum : 0;
      plans[i].max_in_flight = caps[i];
      plans[i].first_vu = first_vu;
      first_vu += caps[i];
      loaded[i] = plans[i].rate_share > 0 && caps[i] > 0;
    }
  } else {
    const auto users = splitUsers(uint32_t(std::max(0, load.users)), capacity);
    for (size_t i = 0; i < plans.size(); ++i) {
      plans[i].users = users[i].users;
      loaded[i] = users[i].users > 0;
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
        loaded[i] = false;
        plans[i].users = 0;
        plans[i].rate_share = 0;
      }
    }
  }

  // What one worker can hold: refused here, with the remedy, rather than by a worker that
  // runs out of memory or file descriptors once the run has started.
  for (const auto& plan : plans) {
    const uint64_t held = open ? plan.max_in_flight : plan.users;
    if (held > uint64_t(common::kMaxUsersPerWorker))
      throw common::ConfigError(
          scenario.file, 0, 0, open ? "load.max_in_flight" : "load.users",
          fmt::format("{} {} on one worker, more than the {} a worker holds (each needs a "
                      "connection and its buffers): add workers (--workers) or lower {}",
                      held, open ? "iterations in flight" : "virtual users",
                      common::kMaxUsersPerWorker, open ? "max_in_flight" : "users"));
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
  std::vector<uint32_t> users;
  for (const auto& plan : plans)
    users.push_back(plan.users);
  return users;
}

} // namespace stampede::master
