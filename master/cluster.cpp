#include "master/cluster.h"

#include "common/keys.h"

#include <fmt/format.h>

#include <array>

namespace stampede::master {

const char* linkStateName(LinkState s) {
  switch (s) {
  case LinkState::Connecting:
    return "connecting";
  case LinkState::Joined:
    return "joined";
  case LinkState::Ready:
    return "ready";
  case LinkState::Running:
    return "running";
  case LinkState::Done:
    return "done";
  case LinkState::Lost:
    return "lost";
  case LinkState::Busy:
    return "busy";
  case LinkState::Refused:
    return "refused";
  }
  return "unknown";
}

Cluster::Cluster(zmq::context_t& context, const common::Clock& clock, uint64_t run_id,
                 ClusterSecurity security)
    : context_(context), clock_(clock), run_id_(run_id), security_(std::move(security)) {
  if (!security_.allowed_workers.empty()) {
    // ZeroMQ asks this socket about every CURVE client that tries to connect to us.
    zap_.emplace(context_, zmq::socket_type::rep);
    zap_->set(zmq::sockopt::linger, 0);
    zap_->bind("inproc://zeromq.zap.01");
  }
}

void Cluster::answerZap() {
  for (;;) {
    std::vector<zmq::message_t> request;
    if (!zmq::recv_multipart(*zap_, std::back_inserter(request), zmq::recv_flags::dontwait))
      return;
    // version, request id, domain, address, identity, mechanism, credentials...
    if (request.size() < 6)
      continue; // cannot answer what we cannot parse; libzmq times the peer out
    bool allowed = false;
    if (request[5].to_string() == "CURVE" && request.size() >= 7 && request[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(request[6].data()), 32);
      allowed = security_.allowed_workers.count(z85) > 0;
    }
    std::array<zmq::const_buffer, 6> reply = {
        zmq::str_buffer("1.0"),
        zmq::buffer(request[1].data(), request[1].size()),
        allowed ? zmq::str_buffer("200") : zmq::str_buffer("400"),
        allowed ? zmq::str_buffer("OK") : zmq::str_buffer("worker key not allowed"),
        zmq::str_buffer(""),
        zmq::str_buffer("")};
    zmq::send_multipart(*zap_, reply);
  }
}

void Cluster::takeHandshakeFailures() {
  for (auto& link : links_) {
    if (!link.monitor)
      continue;
    if (auto failure = link.monitor->take())
      link.handshake_failure = failure->reason;
  }
  if (router_monitor_) {
    if (auto failure = router_monitor_->take())
      fmt::print(stderr, "a worker dialling in from {} was refused: {}\n", failure->peer,
                 failure->reason);
  }
}

void Cluster::dial(const std::vector<WorkerAddress>& addresses) {
  links_.reserve(addresses.size());
  for (size_t i = 0; i < addresses.size(); ++i) {
    WorkerLink link;
    link.address = addresses[i];
    link.name = addresses[i].host.rfind("inproc:", 0) == 0
                    ? std::string("embedded")
                    : fmt::format("{}:{}", addresses[i].host, addresses[i].port);
    link.socket = zmq::socket_t(context_, zmq::socket_type::dealer);
    // The worker's ROUTER tells masters apart by this id: unique per run and worker.
    std::string id = fmt::format("m{:016x}-{}", run_id_, i);
    link.socket.set(zmq::sockopt::routing_id, zmq::buffer(id));
    // Long enough for a last Stop or FinalAck to leave when the master exits, no longer.
    link.socket.set(zmq::sockopt::linger, 250);
    link.socket.set(zmq::sockopt::maxmsgsize, common::kMaxMessageBytes);
    if (!security_.secret_z85.empty())
      common::makeCurveServer(link.socket, security_.secret_z85);
    // Keys or not: a worker that wants keys we lack fails the handshake, and should say so.
    link.monitor = std::make_unique<common::HandshakeMonitor>(
        context_, link.socket, fmt::format("{:016x}-{}", run_id_, i));
    const bool in_process = addresses[i].host.rfind("inproc:", 0) == 0;
    link.socket.connect(in_process ? addresses[i].host : addresses[i].endpoint());
    links_.push_back(std::move(link));
  }
}

void Cluster::listen(const std::string& endpoint) {
  router_.emplace(context_, zmq::socket_type::router);
  router_->set(zmq::sockopt::linger, 250);
  router_->set(zmq::sockopt::maxmsgsize, common::kMaxMessageBytes);
  router_->set(zmq::sockopt::router_mandatory, 1);
  if (!security_.secret_z85.empty()) {
    common::makeCurveServer(*router_, security_.secret_z85);
    router_monitor_ = std::make_unique<common::HandshakeMonitor>(
        context_, *router_, fmt::format("{:016x}-router", run_id_));
  }
  router_->bind(endpoint);
}

void Cluster::sendProbe(WorkerLink& link) {
  wire::Envelope probe;
  probe.mutable_probe()->set_master_ns(common::steadyNs(clock_.now()));
  send(link, probe);
}

void Cluster::handshake(std::chrono::milliseconds timeout, int samples, size_t expect_workers) {
  const auto deadline = clock_.now() + timeout;
  for (auto& link : links_)
    sendProbe(link);
  auto finished = [&] {
    if (router_ && links_.size() < expect_workers)
      return false;
    for (const auto& link : links_)
      if (link.state == LinkState::Connecting && link.handshake_failure.empty())
        return false;
    return true;
  };
  while (!finished() && clock_.now() < deadline) {
    // Workers that joined must keep hearing from us while others are awaited, or their
    // master-silence timeout sends them back to idle.
    heartbeat({LinkState::Joined});
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_.now());
    poll(std::clamp(left, std::chrono::milliseconds(1), std::chrono::milliseconds(200)),
         [&](WorkerLink& link, const wire::Envelope& e) {
           if (e.has_busy()) {
             link.state = LinkState::Busy;
             link.why = e.busy().reason();
             return;
           }
           if (!e.has_hello() || link.state != LinkState::Connecting)
             return;
           const auto& hello = e.hello();
           link.protocol = hello.protocol();
           link.build = hello.build();
           link.cores = hello.cores();
           link.threads = hello.threads();
           if (hello.master_ns() == 0) {
             // A dialling worker announcing itself (reverse mode): start probing it.
             sendProbe(link);
             return;
           }
           link.samples.push_back(
               {hello.master_ns(), hello.worker_ns(), common::steadyNs(clock_.now())});
           if (hello.protocol() != common::kProtocolVersion) {
             link.state = LinkState::Refused;
             link.why = fmt::format("protocol version {} (this master speaks {})", hello.protocol(),
                                    common::kProtocolVersion);
             return;
           }
           if (static_cast<int>(link.samples.size()) >= samples) {
             auto estimate = common::estimateOffset(link.samples);
             link.clock_offset_ns = estimate.offset_ns;
             link.rtt_ns = estimate.rtt_ns;
             link.state = LinkState::Joined;
             link.last_heard = clock_.now();
           } else {
             sendProbe(link);
           }
         });
  }
}

WorkerLink* Cluster::findByRoutingId(const std::string& id) {
  for (auto& link : links_)
    if (link.routing_id == id)
      return &link;
  return nullptr;
}

bool Cluster::poll(std::chrono::milliseconds timeout,
                   const std::function<void(WorkerLink&, const wire::Envelope&)>& on_message) {
  std::vector<zmq::pollitem_t> items;
  if (router_) {
    items.push_back({router_->handle(), 0, ZMQ_POLLIN, 0});
  } else {
    items.reserve(links_.size() + 2);
    for (auto& link : links_)
      items.push_back({link.socket.handle(), 0, ZMQ_POLLIN, 0});
  }
  // Security side channels come after the links, so that indexes above still match links.
  const size_t side = items.size();
  if (zap_)
    items.push_back({zap_->handle(), 0, ZMQ_POLLIN, 0});
  for (auto& link : links_)
    if (link.monitor)
      items.push_back({link.monitor->socket().handle(), 0, ZMQ_POLLIN, 0});
  if (router_monitor_)
    items.push_back({router_monitor_->socket().handle(), 0, ZMQ_POLLIN, 0});
  try {
    if (zmq::poll(items, timeout) <= 0)
      return false;
  } catch (const zmq::error_t& e) {
    // A signal (Ctrl-C) interrupts the wait; the caller looks at its flag and comes back.
    if (e.num() == EINTR)
      return false;
    throw;
  }
  bool side_events = false;
  for (size_t i = side; i < items.size(); ++i)
    side_events = side_events || (items[i].revents & ZMQ_POLLIN);
  if (side_events) {
    if (zap_)
      answerZap();
    takeHandshakeFailures();
  }

  auto deliver = [&](WorkerLink& link, const zmq::message_t& payload) {
    auto envelope = common::decodeEnvelope(payload.data(), payload.size());
    if (!envelope) {
      ++garbage_;
      return;
    }
    if (envelope->has_busy()) {
      on_message(link, *envelope);
      return;
    }
    // Before Welcome a worker's messages carry run id 0; after, they must carry ours.
    if (envelope->run_id() != 0 && envelope->run_id() != run_id_) {
      ++link.wrong_run;
      return;
    }
    if (!link.filter.accept(envelope->seq()))
      return;
    link.last_heard = clock_.now();
    on_message(link, *envelope);
  };

  if (router_) {
    if (!(items[0].revents & ZMQ_POLLIN))
      return false;
    for (;;) {
      std::vector<zmq::message_t> frames;
      if (!zmq::recv_multipart(*router_, std::back_inserter(frames), zmq::recv_flags::dontwait))
        break;
      if (frames.size() != 2) {
        ++garbage_;
        continue;
      }
      auto id = frames[0].to_string();
      WorkerLink* link = findByRoutingId(id);
      if (!link) {
        WorkerLink fresh;
        fresh.routing_id = id;
        fresh.name = fmt::format("dialled-in-{}", links_.size());
        links_.push_back(std::move(fresh));
        link = &links_.back();
      }
      deliver(*link, frames[1]);
    }
    return true;
  }
  for (size_t i = 0; i < links_.size(); ++i) {
    if (!(items[i].revents & ZMQ_POLLIN))
      continue;
    for (;;) {
      zmq::message_t payload;
      if (!links_[i].socket.recv(payload, zmq::recv_flags::dontwait))
        break;
      deliver(links_[i], payload);
    }
  }
  return true;
}

void Cluster::send(WorkerLink& link, wire::Envelope& envelope) {
  envelope.set_protocol(common::kProtocolVersion);
  envelope.set_run_id(run_id_);
  envelope.set_seq(++link.send_seq);
  auto payload = common::encodeEnvelope(envelope);
  try {
    if (router_) {
      router_->send(zmq::buffer(link.routing_id),
                    zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      router_->send(zmq::buffer(payload), zmq::send_flags::dontwait);
    } else {
      link.socket.send(zmq::buffer(payload), zmq::send_flags::dontwait);
    }
  } catch (const zmq::error_t&) {
    // Unreachable or full: the heartbeat timeout decides what that worker's fate is.
  }
}

void Cluster::broadcast(wire::Envelope& envelope, std::initializer_list<LinkState> states) {
  for (auto& link : links_)
    if (std::find(states.begin(), states.end(), link.state) != states.end())
      send(link, envelope);
}

void Cluster::heartbeat(std::initializer_list<LinkState> states) {
  const auto now = clock_.now();
  if (now < next_heartbeat_)
    return;
  next_heartbeat_ = now + std::chrono::seconds(1);
  wire::Envelope beat;
  beat.mutable_heartbeat()->set_sent_ns(common::steadyNs(now));
  broadcast(beat, states);
}

void Cluster::dropMonitors() {
  for (auto& link : links_)
    link.monitor.reset();
}

void Cluster::release() {
  wire::Envelope stop;
  stop.mutable_stop();
  broadcast(stop, {LinkState::Joined, LinkState::Ready, LinkState::Refused});
  // A link that never joined has nothing worth delivering; lingering would keep it dialling
  // after we are gone (and after our ZAP handler is gone), so drop it at once.
  for (auto& link : links_)
    if (link.state == LinkState::Connecting || link.state == LinkState::Busy ||
        (link.state == LinkState::Lost && link.why == "unreachable"))
      link.socket.set(zmq::sockopt::linger, 0);
}

uint64_t Cluster::droppedMessages() const {
  uint64_t total = garbage_;
  for (const auto& link : links_)
    total += link.filter.dropped() + link.wrong_run;
  return total;
}

} // namespace stampede::master
