// What the phases of one run share (master/run.cpp runs them in order: plan, handshake,
// prepare, start, run loop, end, result): the inputs, the cluster, the workers that joined
// with their shares, and the start time. Control thread only.
#pragma once

#include "common/clock.h"
#include "common/scenario.h"
#include "master/cli.h"
#include "master/cluster.h"
#include "master/plan.h"

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stampede::master {

class MetricsServer;

// Workers report Stats, and the master judges thresholds, prints the live line, writes
// timeseries rows and sends heartbeats, once per this interval.
constexpr std::chrono::seconds kTickInterval = common::kStatsInterval;

class CapacityProbes;

struct RunContext {
  const CliOptions& cli;
  const common::Scenario& scenario; // with --duration applied
  Cluster& cluster;
  const common::Clock& clock;

  // Plan: the workers that joined, in index order, and each one's share.
  std::vector<WorkerLink*> joined{};
  std::vector<WorkerPlan> plans{};
  // Every worker's users by worker index, for each load group (Scenario::groups).
  std::vector<std::vector<uint32_t>> cluster_users{};
  size_t largest_prepare = 0; // bytes of the largest Prepare envelope

  // The messaging start barrier (master/start_barrier.h), when the run had one: how long the
  // master waited for every subscription, and how many there were.
  std::optional<double> start_barrier_s{};
  uint64_t start_barrier_subscriptions = 0;
  // Errors the workers reported during the barrier (a subscription that failed): the run
  // starts and the run loop judges them first, as any error, so that the report has them.
  std::vector<std::pair<WorkerLink*, wire::Envelope>> early_errors{};

  // Start: when the load starts and is due to end, on the master's clock.
  common::SteadyTime t0{};
  common::SteadyTime end_at{};

  // --metrics-listen: where the run loop publishes its figures (nullptr: nowhere).
  MetricsServer* metrics = nullptr;
  // A capacity run (scenario.capacity): its probes; the run loop feeds them. nullptr otherwise.
  CapacityProbes* capacity = nullptr;
};

inline double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

inline double millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

inline std::string workerLabel(const WorkerLink& link) {
  return link.name.empty() ? std::string("worker") : fmt::format("worker {}", link.name);
}

// Half the round trip of the sample the offset came from: how wrong the offset can be.
inline double clockErrorMs(const WorkerLink& link) {
  return link.rtt_ns > 0 ? double(link.rtt_ns) / 2e6 : 0.0;
}

} // namespace stampede::master
