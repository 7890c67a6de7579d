// One run of a scenario, from `master` arguments to an exit code: validate, gather the
// workers (a local one when no --workers or --listen is given), hand out shares, start
// them together, merge their stats, halt or stop, and write the report. The calling thread is
// the control thread.
#pragma once

#include "master/cli.h"
#include "master/hosts_file.h"

#include <zmq.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace stampede::master {

// A worker in the master's process, for a run without --workers or --listen; it stops when
// destroyed. The binary provides it (master/embedded_worker.h), so that this library does not
// link the worker's HTTP stack.
class LocalWorker {
public:
  virtual ~LocalWorker() = default;
  virtual WorkerAddress address() const = 0; // what the cluster dials
};

struct LocalWorkerOptions {
  int threads = 0; // --threads
  std::chrono::milliseconds heartbeat_timeout{0};
  std::string master_secret; // --key's secret (Z85), empty without CURVE
};

using LocalWorkerFactory =
    std::function<std::unique_ptr<LocalWorker>(zmq::context_t&, const LocalWorkerOptions&)>;

// Returns the process exit code (0 passed, 1 halted/failed, 2 invalid, 3 infra, 130 interrupted).
int runScenario(const CliOptions& cli, const LocalWorkerFactory& local_worker);

} // namespace stampede::master
