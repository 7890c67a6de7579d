// A master's Prepare turned into the run this worker will start: the scenario loaded from the
// YAML, files and env() values shipped with it (this host's environment and disk are never
// consulted), checked against --allow-target, and the engine's options for this worker's
// share. Control thread (resolving the --allow-target names blocks).
#pragma once

#include "common/scenario.h"
#include "stampede.pb.h"
#include "worker/engine.h"
#include "worker/target_policy.h"

#include <cstdint>
#include <memory>
#include <stdexcept>

namespace stampede::worker {

// The scenario's target lies outside --allow-target; what() says why, in one line.
struct TargetRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct WorkerPlace {
  uint32_t worker_index = 0;
  uint32_t worker_count = 1;
  int threads = 0;     // worker --threads; 0: one per core
  uint64_t run_id = 0; // the master's (Envelope.run_id); 0: none known
};

struct PreparedRun {
  std::shared_ptr<common::Scenario> scenario;
  // Everything but the control thread's hooks (master_alive_until_ns, the listeners).
  EngineOptions options;
};

// Throws common::ConfigError for a scenario the loader refuses, TargetRefused for one outside
// `allow_target` (empty: anywhere).
PreparedRun prepareRun(const wire::Prepare& prepare, const WorkerPlace& place,
                       const TargetPolicy& allow_target);

} // namespace stampede::worker
