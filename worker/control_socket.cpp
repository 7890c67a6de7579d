#include "worker/control_socket.h"

#include "common/keys.h"
#include "common/protocol.h"

#include <fmt/format.h>

#include <iterator>
#include <stdexcept>
#include <sys/eventfd.h>
#include <unistd.h>
#include <vector>

#include <zmq_addon.hpp>

namespace stampede::worker {

namespace {
// How long an unauthenticated control connection may stay open without completing the handshake.
constexpr int kControlHandshakeMs = 3000;
} // namespace

ControlSocket::ControlSocket(zmq::context_t& context, DaemonOptions options)
    : context_(context), options_(std::move(options)) {}

ControlSocket::~ControlSocket() {
  if (wake_fd_ >= 0)
    ::close(wake_fd_);
}

void ControlSocket::open() {
  router_ = options_.master.empty();
  socket_ = zmq::socket_t(context_, router_ ? zmq::socket_type::router : zmq::socket_type::dealer);
  socket_.set(zmq::sockopt::maxmsgsize, common::kMaxMessageBytes);
  socket_.set(zmq::sockopt::linger, 0);
  if (!options_.master_public_key.empty()) {
    // A CURVE client whichever side binds: only the holder of the master's secret completes
    // a handshake with us.
    common::KeyPair own =
        options_.secret_key.empty()
            ? common::generateKeyPair()
            : common::KeyPair{common::publicFromSecret(options_.secret_key), options_.secret_key};
    common::makeCurveClient(socket_, own, options_.master_public_key);
  }
  if (!options_.master_public_key.empty() || !router_) {
    // Dialling a master: its TCP connection closing ends the session at once (a reconnect
    // would come with a new routing id, which that master does not know), not after the
    // heartbeat timeout. Listening, a closed connection cannot be told from another peer's
    // (the events name no routing id), and a master that dials again keeps its id: the
    // timeout decides there.
    static std::atomic<int> monitors{0};
    monitor_ = std::make_unique<common::HandshakeMonitor>(
        context_, socket_, fmt::format("worker-{}-{}", ::getpid(), monitors++),
        /*watch_disconnects=*/!router_);
  }
  if (router_) {
    // A send to a master that went away must fail, not vanish into a queue.
    socket_.set(zmq::sockopt::router_mandatory, 1);
    // A connection that has not finished the ZMTP (and CURVE) handshake within this is closed:
    // a flood of idle connections to the control port cannot hold descriptors for long
    // (libzmq's default is 30 s).
    socket_.set(zmq::sockopt::handshake_ivl, kControlHandshakeMs);
    socket_.bind(options_.listen);
  } else {
    socket_.connect(options_.master);
  }
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0)
    throw std::runtime_error("eventfd failed");
}

ControlEvents ControlSocket::wait(std::chrono::milliseconds timeout, bool watch_monitor) {
  const bool with_monitor = watch_monitor && monitor_;
  zmq::pollitem_t items[] = {
      {socket_.handle(), 0, ZMQ_POLLIN, 0},
      {nullptr, wake_fd_, ZMQ_POLLIN, 0},
      {with_monitor ? monitor_->socket().handle() : nullptr, -1, ZMQ_POLLIN, 0}};
  ControlEvents events;
  try {
    zmq::poll(items, with_monitor ? 3 : 2, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR)
      throw;
    events.interrupted = true;
    return events;
  }
  if (items[1].revents & ZMQ_POLLIN) {
    uint64_t ignored;
    [[maybe_unused]] auto n = ::read(wake_fd_, &ignored, sizeof ignored);
  }
  events.messages = items[0].revents & ZMQ_POLLIN;
  events.monitor = with_monitor && (items[2].revents & ZMQ_POLLIN);
  return events;
}

std::optional<ControlMessage> ControlSocket::receive(std::atomic<uint64_t>& dropped) {
  for (;;) {
    std::vector<zmq::message_t> frames;
    auto got = zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait);
    if (!got)
      return std::nullopt;
    ControlMessage message;
    const zmq::message_t* payload = nullptr;
    if (router_ && frames.size() == 2) {
      message.peer = frames[0].to_string();
      payload = &frames[1];
    } else if (!router_ && frames.size() == 1) {
      payload = &frames[0];
    }
    std::optional<wire::Envelope> envelope;
    if (payload)
      envelope = common::decodeEnvelope(payload->data(), payload->size());
    if (!envelope) {
      ++dropped;
      continue;
    }
    message.envelope = std::move(*envelope);
    return message;
  }
}

void ControlSocket::send(const std::string& peer, const wire::Envelope& envelope) {
  auto payload = common::encodeEnvelope(envelope);
  try {
    if (router_)
      socket_.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    socket_.send(zmq::buffer(payload), zmq::send_flags::dontwait);
  } catch (const zmq::error_t&) {
    // The master is gone (ROUTER_MANDATORY) or its queue is full: see the header.
  }
}

MonitorNews ControlSocket::takeMonitorNews() {
  MonitorNews news;
  if (!monitor_)
    return news;
  news.refused = monitor_->take();
  if (monitor_->disconnects() != disconnects_seen_) {
    disconnects_seen_ = monitor_->disconnects();
    news.master_disconnected = true;
  }
  return news;
}

void ControlSocket::wake() noexcept {
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
}

} // namespace stampede::worker
