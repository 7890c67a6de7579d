// Watches one ZeroMQ socket for failed handshakes (wrong key, no key, a tampered frame), so
// that the operator is told why a peer never answered instead of waiting for a timeout.
// Control thread only: poll socket() with the rest, then call take().
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <zmq.hpp>

namespace stampede::common {

struct HandshakeFailure {
  std::string peer;   // the endpoint as ZeroMQ names it
  std::string reason; // handshakeFailure() wording
};

class HandshakeMonitor {
public:
  // `watched` must outlive the monitor. With `watch_disconnects`, a connection that closes
  // (ZMQ_EVENT_DISCONNECTED) is counted too (see disconnects()).
  HandshakeMonitor(zmq::context_t& context, zmq::socket_t& watched, const std::string& name,
                   bool watch_disconnects = false);
  ~HandshakeMonitor();
  HandshakeMonitor(const HandshakeMonitor&) = delete;
  HandshakeMonitor& operator=(const HandshakeMonitor&) = delete;
  zmq::socket_t& socket() { return pair_; }
  // Drains pending events without blocking; returns the last failure among them, if any.
  std::optional<HandshakeFailure> take();
  // Connections that closed, as seen by take() so far.
  uint64_t disconnects() const { return disconnects_; }

private:
  void* watched_;
  uint64_t disconnects_ = 0;
  zmq::socket_t pair_;
};

} // namespace stampede::common
