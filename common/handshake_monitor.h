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
  // The endpoint as ZeroMQ names it: the peer's address on a socket that connects, but this
  // socket's own on one that binds (ZeroMQ's events do not carry the remote address).
  std::string peer;
  std::string reason; // handshakeFailure() wording, or what this side's settings imply
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
  // handshakeFailure(), except when ZeroMQ gives no detail (the peer broke the handshake off):
  // then what that means for this side's settings (keys or not, CURVE server or client).
  std::string reason(uint16_t event, int32_t value) const;

  void* watched_;
  uint64_t disconnects_ = 0;
  zmq::socket_t pair_;
};

} // namespace stampede::common
