#include "worker/prepare_run.h"

#include "common/load_plan.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

namespace stampede::worker {

PreparedRun prepareRun(const wire::Prepare& prepare, const WorkerPlace& place,
                       const TargetPolicy& allow_target) {
  const std::map<std::string, std::string> env(prepare.env().begin(), prepare.env().end());
  std::map<std::string, std::string> files;
  for (const auto& [name, content] : prepare.files())
    files.emplace(name, content);
  common::LoadOptions load_options;
  load_options.shipped_env = &env;
  load_options.shipped_files = &files;
  load_options.overrides.assign(prepare.overrides().begin(), prepare.overrides().end());
  load_options.find_capacity = prepare.find_capacity();
  PreparedRun run;
  run.scenario = std::make_shared<common::Scenario>(
      common::loadScenarioText(prepare.scenario_yaml(), prepare.scenario_file(), load_options));
  if (prepare.duration_us() > 0)
    common::applyDuration(*run.scenario, std::chrono::microseconds(prepare.duration_us()));
  // The list's names resolved once, for this check and for every connection of the run.
  if (!allow_target.empty()) {
    auto resolved = std::make_shared<const TargetPolicy>(allow_target.resolved());
    if (auto why = resolved->check(*run.scenario); !why.empty())
      throw TargetRefused(why);
    run.options.allow_target = std::move(resolved);
  }
  EngineOptions& options = run.options;
  options.threads = place.threads;
  options.worker_index = place.worker_index;
  options.worker_count = place.worker_count;
  if (prepare.cluster_users_size() > 0) {
    const std::vector<uint32_t> users(prepare.cluster_users().begin(),
                                      prepare.cluster_users().end());
    options.cluster_users = common::clusterUsersOf(place.worker_index, users);
  }
  if (prepare.own_users_size() > 0)
    options.cluster_users =
        std::vector<uint64_t>(prepare.own_users().begin(), prepare.own_users().end());
  options.feeder_start.assign(prepare.feeder_start().begin(), prepare.feeder_start().end());
  if (place.run_id != 0) // the run and the place, mixed (0 would mean a random order)
    options.shuffle_seed =
        std::max<uint64_t>(1, (place.run_id * 0x9E3779B97F4A7C15ull) ^ (place.worker_index + 1));
  if (prepare.rate_share() > 0)
    options.rate_share = prepare.rate_share();
  if (prepare.max_in_flight() > 0)
    options.max_in_flight = prepare.max_in_flight();
  options.first_vu = prepare.first_vu();
  options.iterations = prepare.iterations();
  for (const auto& group : prepare.other_groups()) {
    GroupShare share;
    if (group.cluster_users_size() > 0) {
      const std::vector<uint32_t> users(group.cluster_users().begin(), group.cluster_users().end());
      share.cluster_users = common::clusterUsersOf(place.worker_index, users);
    }
    share.rate_share = group.rate_share();
    if (group.max_in_flight() > 0)
      share.max_in_flight = group.max_in_flight();
    share.first_vu = group.first_vu();
    share.iterations = group.iterations();
    options.other_groups.push_back(std::move(share));
  }
  return run;
}

} // namespace stampede::worker
