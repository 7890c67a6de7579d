#include "master/replan.h"

#include "common/load_plan.h"

#include <algorithm>

namespace stampede::master {

std::string whyNoReplan(const common::Scenario& scenario) {
  if (scenario.capacity)
    return "a capacity search sets each worker's rate itself";
  if (scenario.load.iterations > 0)
    return "load.iterations is split among the workers at the start";
  for (const auto& feeder : scenario.data)
    if (feeder.split == common::Feeder::Split::PerWorker)
      return "feeder data." + feeder.name +
             " is split: per_worker and its rows are all handed out (split: shared admits more)";
  return "";
}

std::vector<uint64_t> usersOf(const WorkerPlan& plan, uint32_t index,
                              std::span<const uint32_t> cluster_users) {
  if (plan.own_users)
    return *plan.own_users;
  return common::clusterUsersOf(index, cluster_users);
}

Replan replanForNewcomer(const common::Scenario& scenario, std::span<const WorkerPlan> plans,
                         std::span<const uint32_t> cluster_users, std::span<const double> capacity,
                         uint64_t next_first_vu) {
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
  out.plans.push_back(std::move(newcomer));
  for (const auto& plan : out.plans)
    out.cluster_users.push_back(plan.users);
  return out;
}

std::vector<uint64_t> feederStart(std::span<const uint64_t> positions,
                                  std::span<const uint64_t> last_step) {
  std::vector<uint64_t> start(positions.begin(), positions.end());
  for (size_t f = 0; f < start.size() && f < last_step.size(); ++f)
    start[f] += (last_step[f] * 3 + 1) / 2;
  return start;
}

} // namespace stampede::master
