#include "master/metrics_publish.h"

#include "master/halt_policy.h"
#include "master/interrupt.h"
#include "master/metrics_text.h"

#include <fmt/format.h>

#include <cstdio>
#include <stdexcept>
#include <thread>

namespace stampede::master {
namespace {

MetricsState stateOf(const RunContext& run, const common::StatsBook& book, double elapsed_s) {
  MetricsState state;
  state.scenario = &run.scenario;
  state.run_id = run.cluster.runId();
  state.book = &book;
  state.elapsed_s = elapsed_s;
  for (const auto* link : run.joined) {
    if (link->state == LinkState::Running)
      ++state.workers_up;
    else if (link->state == LinkState::Lost)
      ++state.workers_lost;
  }
  return state;
}

} // namespace

std::unique_ptr<MetricsServer> startMetrics(const CliOptions& cli, std::optional<int>& exit_code) {
  if (cli.metrics_listen.empty() || cli.dry_run)
    return nullptr;
  try {
    auto server = std::make_unique<MetricsServer>(cli.metrics_listen);
    fmt::print("metrics: serving {}\n", server->url());
    std::fflush(stdout);
    return server;
  } catch (const std::runtime_error& e) {
    fmt::print(stderr, "{}\n", e.what());
    exit_code = kExitInvalid;
    return nullptr;
  }
}

void publishRunMetrics(const RunContext& run, const Progress& progress, double elapsed_s,
                       uint32_t active_users) {
  if (!run.metrics)
    return;
  MetricsState state = stateOf(run, progress.book(), elapsed_s);
  state.active_users = active_users;
  const auto& last = progress.lastInterval();
  state.achieved_rps =
      progress.lastIntervalS() > 0 ? double(last.requests) / progress.lastIntervalS() : 0.0;
  state.schedule_lag_p99_s = double(last.schedule_lag_us.percentileUs(99)) / 1e6;
  run.metrics->publish(metricsText(state));
}

void publishFinalMetrics(const RunContext& run, const RunResult& result) {
  if (!run.metrics)
    return;
  MetricsState state = stateOf(run, result.book, result.duration_s);
  for (const auto& w : result.workers)
    state.workers_up += w.state == "done" || w.state == "left" ? 1 : 0;
  state.exit_code = result.exit_code;
  run.metrics->publish(metricsText(state));
  const auto grace = run.cli.metrics_grace;
  if (interrupted() || grace.count() == 0)
    return;
  fmt::print("metrics: the final figures stay on {} for {:.0f}s (--metrics-grace; Ctrl-C ends "
             "it)\n",
             run.metrics->url(), std::chrono::duration<double>(grace).count());
  std::fflush(stdout);
  const auto until = std::chrono::steady_clock::now() + grace;
  while (std::chrono::steady_clock::now() < until && !interrupted())
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

} // namespace stampede::master
