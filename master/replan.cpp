#include "master/replan.h"

#include "common/csv.h"
#include "common/load_plan.h"

#include <algorithm>
#include <numeric>

namespace stampede::master {

std::string whyNoReplan(const common::Scenario& scenario) {
  if (scenario.capacity)
    return "a capacity search sets each worker's rate itself";
  if (scenario.load.iterations > 0)
    return "load.iterations is split among the workers at the start";
  if (scenario.groups.size() > 1)
    return "flows with a load: of their own are each split among the workers at the start";
  for (const auto& feeder : scenario.data)
    if (feeder.split == common::Feeder::Split::PerWorker &&
        feeder.order != common::Feeder::Order::Sequence)
      return "feeder data." + feeder.name +
             " is split: per_worker and drawn out of order, so its rows cannot be handed over "
             "(order: sequence or split: shared admits more)";
  return "";
}

std::vector<uint64_t> usersOf(const WorkerPlan& plan, uint32_t index,
                              std::span<const uint32_t> cluster_users) {
  if (plan.own_users)
    return *plan.own_users;
  return common::clusterUsersOf(index, cluster_users);
}

namespace {

// Every per_worker feeder's slices as row indexes, from the plan's contiguous slices when no
// re-plan has listed them yet.
void listSlices(const common::Scenario& scenario, std::vector<WorkerPlan>& plans) {
  for (size_t f = 0; f < scenario.data.size(); ++f) {
    uint32_t at = 0;
    for (auto& plan : plans) {
      plan.feeder_ids.resize(scenario.data.size());
      const size_t count = f < plan.feeder_rows.size() ? plan.feeder_rows[f] : 0;
      auto& ids = plan.feeder_ids[f];
      if (!ids.empty() || scenario.data[f].split != common::Feeder::Split::PerWorker)
        continue;
      for (size_t i = 0; i < count; ++i)
        ids.push_back(at++);
    }
  }
}

// The newcomer's fraction of the rows each place has not reached, from the end of its slice.
void handOverRows(const common::Scenario& scenario, Replan& out, std::span<const double> capacity,
                  std::span<const std::vector<uint64_t>> reached, WorkerPlan& newcomer) {
  const double sum = std::accumulate(capacity.begin(), capacity.end(), 0.0);
  const double fraction = sum > 0 ? capacity.back() / sum : 0;
  newcomer.feeder_ids.assign(scenario.data.size(), {});
  newcomer.feeder_rows.assign(scenario.data.size(), 0);
  listSlices(scenario, out.plans);
  for (size_t f = 0; f < scenario.data.size(); ++f) {
    const auto& feeder = scenario.data[f];
    if (feeder.split != common::Feeder::Split::PerWorker) {
      newcomer.feeder_rows[f] = feeder.rows.size();
      continue;
    }
    auto& mine = newcomer.feeder_ids[f];
    for (size_t i = 0; i < out.plans.size(); ++i) {
      auto& ids = out.plans[i].feeder_ids[f];
      const uint64_t used = i < reached.size() && f < reached[i].size() ? reached[i][f] : 0;
      const size_t left = ids.size() > used ? ids.size() - size_t(used) : 0;
      const auto give = size_t(double(left) * fraction);
      mine.insert(mine.end(), ids.end() - long(give), ids.end());
      ids.resize(ids.size() - give);
      out.plans[i].feeder_rows[f] = ids.size();
      if (give > 0 && !ids.empty()) {
        std::vector<std::vector<std::string>> rows;
        for (uint32_t id : ids)
          rows.push_back(feeder.rows[id]);
        out.plans[i].files[feeder.file] = common::writeCsv(feeder.columns, rows);
      }
    }
    if (mine.empty()) {
      out.refused = "feeder data." + feeder.name +
                    " is split: per_worker and no worker has rows left to hand over";
      return;
    }
    newcomer.feeder_rows[f] = mine.size();
    std::vector<std::vector<std::string>> rows;
    for (uint32_t id : mine)
      rows.push_back(feeder.rows[id]);
    newcomer.files[feeder.file] = common::writeCsv(feeder.columns, rows);
  }
  out.keep_rows.assign(out.plans.size(), std::vector<uint64_t>(scenario.data.size(), 0));
  for (size_t i = 0; i < out.plans.size(); ++i)
    for (size_t f = 0; f < scenario.data.size(); ++f)
      out.keep_rows[i][f] = scenario.data[f].split == common::Feeder::Split::PerWorker
                                ? out.plans[i].feeder_ids[f].size()
                                : scenario.data[f].rows.size();
}

} // namespace

Replan replanForNewcomer(const common::Scenario& scenario, std::span<const WorkerPlan> plans,
                         std::span<const uint32_t> cluster_users, std::span<const double> capacity,
                         uint64_t next_first_vu, std::span<const std::vector<uint64_t>> reached) {
  const bool open = scenario.load.model == common::LoadSpec::Model::Open;
  const auto fresh = planWorkers(scenario, capacity);
  Replan out;
  out.plans.assign(plans.begin(), plans.end());
  out.retire.resize(plans.size());
  WorkerPlan newcomer = fresh.back();
  newcomer.files = scenario.files;
  if (open) {
    for (size_t i = 0; i < plans.size(); ++i) {
      out.plans[i].rate_share = fresh[i].rate_share;
      out.plans[i].max_in_flight = fresh[i].max_in_flight;
    }
    newcomer.first_vu = next_first_vu;
    out.next_first_vu = next_first_vu + newcomer.max_in_flight;
  } else {
    std::vector<uint64_t> given;
    for (size_t i = 0; i < plans.size(); ++i) {
      auto mine = usersOf(plans[i], uint32_t(i), cluster_users);
      // The highest numbers go: a ramp brings them in last, so both sides ramp alike.
      const size_t keep = std::min<size_t>(mine.size(), fresh[i].users);
      out.retire[i].assign(mine.begin() + long(keep), mine.end());
      given.insert(given.end(), out.retire[i].begin(), out.retire[i].end());
      mine.resize(keep);
      out.plans[i].users = uint32_t(mine.size());
      out.plans[i].own_users = std::move(mine);
    }
    std::sort(given.begin(), given.end());
    newcomer.users = uint32_t(given.size());
    newcomer.own_users = std::move(given);
    out.next_first_vu = next_first_vu;
  }
  handOverRows(scenario, out, capacity, reached, newcomer);
  if (!out.refused.empty())
    return out;
  out.plans.push_back(std::move(newcomer));
  for (const auto& plan : out.plans)
    out.cluster_users.push_back(plan.users);
  return out;
}

std::vector<uint64_t> feederReach(std::span<const uint64_t> positions,
                                  std::span<const uint64_t> last_step) {
  std::vector<uint64_t> reach(positions.begin(), positions.end());
  for (size_t f = 0; f < reach.size() && f < last_step.size(); ++f)
    reach[f] += 2 * last_step[f] + 1;
  return reach;
}

std::vector<uint64_t> feederStart(std::span<const uint64_t> positions,
                                  std::span<const uint64_t> last_step) {
  std::vector<uint64_t> start(positions.begin(), positions.end());
  for (size_t f = 0; f < start.size() && f < last_step.size(); ++f)
    start[f] += (last_step[f] * 3 + 1) / 2;
  return start;
}

} // namespace stampede::master
