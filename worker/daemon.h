// The worker daemon: the control session with one master at a time over ZeroMQ, driving the
// load engine. With `listen` it binds a ROUTER (masters dial it; any other master gets Busy);
// with `master` it dials a master's ROUTER with a DEALER (Kubernetes, NAT). Everything here
// runs on the control thread that calls run(); load threads only post errors to it. The
// messages travel through worker/control_socket; worker/prepare_run turns a Prepare into a run.
#pragma once

#include "common/clock.h"
#include "common/error_context.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <zmq.hpp>
#include <zmq_addon.hpp>

namespace stampede::worker {

struct DaemonOptions {
  std::string listen;                                // bind a ROUTER here ...
  std::string master;                                // ... or dial this master
  int threads = 0;                                   // load threads; 0: one per core
  std::chrono::milliseconds heartbeat_timeout{3000}; // master silent this long: stop, go idle
  bool quiet = false;
  std::string master_public_key; // Z85: speak CURVE, and only to the holder of this key
  std::string secret_key;        // Z85: our own key (an ephemeral pair when empty)
  std::string allow_target;      // --allow-target list; empty: any target
  // The daemon's and its engines' clock (timers, stamps, cadences); nullptr: the steady
  // clock. Tests pass one they advance by hand. Must outlive the daemon.
  const common::Clock* clock = nullptr;
  // Testing only (--test-clock-skew): this daemon's clock runs this far from the steady clock,
  // as another host's would, so that tests can check what the clock offsets correct.
  std::chrono::milliseconds test_clock_skew{0};
  // Testing only (--test-clock-drift): and drifts this many parts per million from its start,
  // so that tests can check that the master re-measures the offsets during a run.
  int64_t test_clock_drift_ppm = 0;
};

// Counters an operator (and the tests) can read to see what the daemon dropped.
struct DaemonCounters {
  std::atomic<uint64_t> runs{0};
  std::atomic<uint64_t> dropped_messages{0}; // garbage, stale, duplicate or wrong run id
  std::atomic<uint64_t> busy_replies{0};
  std::atomic<uint64_t> refused_handshakes{0}; // wrong key, no key, tampered frames
  std::atomic<uint64_t> refused_scenarios{0};  // outside --allow-target
};

class WorkerDaemon {
public:
  WorkerDaemon(zmq::context_t& context, DaemonOptions options);
  ~WorkerDaemon();
  WorkerDaemon(const WorkerDaemon&) = delete;
  WorkerDaemon& operator=(const WorkerDaemon&) = delete;

  // Binds or connects; throws zmq::error_t when the endpoint is unusable.
  void open();
  // Serves masters until `stop` becomes true (checked at least every 50 ms).
  void run(const std::atomic<bool>& stop);
  const DaemonCounters& counters() const { return counters_; }

private:
  class Session;
  std::unique_ptr<Session> session_;
  DaemonCounters counters_;
};

} // namespace stampede::worker
