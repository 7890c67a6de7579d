// The worker's end of the control connection, as transport only: one ZeroMQ socket (a ROUTER
// that masters dial, with `listen`; a DEALER that dials one master, with `master`), CURVE when
// a master key is given, the handshake monitor, and an eventfd through which load threads wake
// the control thread. It moves whole envelopes; sessions and runs are the daemon's business.
// Control thread only, except wake().
#pragma once

#include "common/handshake_monitor.h"
#include "stampede.pb.h"
#include "worker/daemon.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <zmq.hpp>

namespace stampede::worker {

struct ControlMessage {
  std::string peer; // listening: the sender's routing id; dialling: empty
  wire::Envelope envelope;
};

// What one wait() saw.
struct ControlEvents {
  bool interrupted = false; // a signal ended the wait: nothing else was looked at
  bool messages = false;    // envelopes wait for receive()
  bool monitor = false;     // handshake events wait for takeMonitorNews()
};

// What the handshake monitor saw since the last look.
struct MonitorNews {
  std::optional<common::HandshakeFailure> refused; // the last refused handshake, if any
  bool master_disconnected = false;                // dialling: the master's connection closed
};

class ControlSocket {
public:
  ControlSocket(zmq::context_t& context, DaemonOptions options);
  ~ControlSocket();
  ControlSocket(const ControlSocket&) = delete;
  ControlSocket& operator=(const ControlSocket&) = delete;

  // Binds or connects; throws zmq::error_t when the endpoint is unusable.
  void open();
  // A ROUTER that masters dial (else a DEALER that dials one master).
  bool listening() const { return router_; }

  // Waits up to `timeout` for envelopes, a wake(), and (with `watch_monitor`) handshake
  // events. A wake() is consumed here.
  ControlEvents wait(std::chrono::milliseconds timeout, bool watch_monitor = true);
  // The next well-formed envelope queued, or nullopt when none is. Anything else (unparsable,
  // the wrong number of frames) is skipped and counted in `dropped`.
  std::optional<ControlMessage> receive(std::atomic<uint64_t>& dropped);
  // Best effort: to a master that is gone (ROUTER_MANDATORY) or whose queue is full, the
  // envelope is lost, and the heartbeat timeout decides what happens to the run. `peer` is
  // ignored when dialling.
  void send(const std::string& peer, const wire::Envelope& envelope);
  MonitorNews takeMonitorNews();

  // Any thread: makes the control thread's wait() return now.
  void wake() noexcept;

private:
  zmq::context_t& context_;
  DaemonOptions options_;
  zmq::socket_t socket_;
  bool router_ = false;
  int wake_fd_ = -1;
  std::unique_ptr<common::HandshakeMonitor> monitor_;
  uint64_t disconnects_seen_ = 0; // dialling: the monitor's count when last looked at
};

} // namespace stampede::worker
