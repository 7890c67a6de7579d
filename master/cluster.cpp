#include "master/cluster.h"

#include "common/keys.h"

#include <fmt/format.h>

#include <array>
#include <cstring>

namespace stampede::master {

namespace {
// The longest one poll of the handshake waits: the workers that joined must get their
// heartbeat on time (common::kHeartbeatInterval) while others are awaited.
constexpr std::chrono::milliseconds kHandshakePoll{200};
} // namespace

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
  case LinkState::Left:
    return "left";
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
    : context_(context), clock_(clock), run_id_(run_id), security_(std::move(security)),
      decode_block_(std::make_unique_for_overwrite<char[]>(kDecodeBlockBytes)),
      decode_arena_(decode_block_.get(), kDecodeBlockBytes) {
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
  if (!monitor_)
    return;
  if (!dialled_) {
    if (auto failure = monitor_->take())
      // The monitor's event names our own endpoint, not the peer's address: say which.
      fmt::print(stderr, "a worker dialling in to {} was refused: {}\n", failure->peer,
                 failure->reason);
    return;
  }
  // Every pending event, not only the last (take()): one monitor watches all the workers we
  // dial, and each event names the endpoint we connected to.
  for (;;) {
    std::vector<zmq::message_t> frames;
    if (!zmq::recv_multipart(monitor_->socket(), std::back_inserter(frames),
                             zmq::recv_flags::dontwait))
      return;
    // Frame 1: 16-bit event, 32-bit value; frame 2: the endpoint.
    if (frames.size() != 2 || frames[0].size() < 6)
      continue;
    uint16_t event = 0;
    int32_t value = 0;
    std::memcpy(&event, frames[0].data(), sizeof event);
    std::memcpy(&value, frames[0].data<char>() + 2, sizeof value);
    if (auto it = by_endpoint_.find(frames[1].to_string()); it != by_endpoint_.end())
      links_[it->second].handshake_failure = common::handshakeFailure(event, value);
  }
}

void Cluster::openRouter() {
  router_.emplace(context_, zmq::socket_type::router);
  // Long enough for a last Stop or FinalAck to leave when the master exits, no longer.
  router_->set(zmq::sockopt::linger, 250);
  router_->set(zmq::sockopt::maxmsgsize, common::kMaxMessageBytes);
  // A send to a worker we have no connection for fails instead of vanishing. (One we dialled
  // has a queue from connect() on, as a DEALER would: ZMQ_IMMEDIATE stays off.)
  router_->set(zmq::sockopt::router_mandatory, 1);
  if (!security_.secret_z85.empty())
    common::makeCurveServer(*router_, security_.secret_z85);
}

void Cluster::dial(const std::vector<WorkerAddress>& addresses) {
  openRouter();
  dialled_ = true;
  // Keys or not: a worker that wants keys we lack fails the handshake, and should say so.
  monitor_ = std::make_unique<common::HandshakeMonitor>(context_, *router_,
                                                        fmt::format("{:016x}-dial", run_id_));
  for (size_t i = 0; i < addresses.size(); ++i) {
    WorkerLink link;
    link.address = addresses[i];
    const bool in_process = addresses[i].host.rfind("inproc:", 0) == 0;
    link.name = in_process ? std::string("embedded")
                           : fmt::format("{}:{}", addresses[i].host, addresses[i].port);
    link.endpoint = in_process ? addresses[i].host : addresses[i].endpoint();
    link.routing_id = fmt::format("w{}", i);
    // Both ids are taken per connect. The worker's ROUTER tells masters apart by ours: unique
    // per run and worker, so that a worker listed twice under two names answers Busy.
    router_->set(zmq::sockopt::routing_id, fmt::format("m{:016x}-{}", run_id_, i));
    router_->set(zmq::sockopt::connect_routing_id, link.routing_id);
    router_->connect(link.endpoint);
    by_routing_id_.emplace(link.routing_id, links_.size());
    by_endpoint_.emplace(link.endpoint, links_.size());
    links_.push_back(std::move(link));
  }
}

void Cluster::listen(const std::string& endpoint) {
  openRouter();
  if (!security_.secret_z85.empty())
    monitor_ = std::make_unique<common::HandshakeMonitor>(context_, *router_,
                                                          fmt::format("{:016x}-router", run_id_));
  router_->bind(endpoint);
}

void Cluster::sendProbe(WorkerLink& link) {
  wire::Envelope probe;
  probe.mutable_probe()->set_master_ns(common::steadyNs(clock_.now()));
  send(link, probe);
}

void Cluster::handshake(std::chrono::milliseconds timeout, int samples, size_t expect_workers,
                        const std::function<bool()>& interrupted) {
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
  while (!finished() && clock_.now() < deadline && !(interrupted && interrupted())) {
    // Workers that joined must keep hearing from us while others are awaited, or their
    // master-silence timeout sends them back to idle.
    heartbeat({LinkState::Joined});
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_.now());
    poll(std::clamp(left, std::chrono::milliseconds(1), kHandshakePoll),
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
             seedClock(link);
             link.state = LinkState::Joined;
             link.last_heard = clock_.now();
           } else {
             sendProbe(link);
           }
         });
  }
}

WorkerLink* Cluster::linkFor(const zmq::message_t& routing_id) {
  auto id = routing_id.to_string();
  if (auto it = by_routing_id_.find(id); it != by_routing_id_.end())
    return &links_[it->second];
  // Only a dialling worker (reverse mode) comes with an id we did not give it.
  if (dialled_)
    return nullptr;
  WorkerLink fresh;
  fresh.routing_id = id;
  fresh.name = fmt::format("dialled-in-{}", links_.size());
  by_routing_id_.emplace(std::move(id), links_.size());
  links_.push_back(std::move(fresh));
  return &links_.back();
}

void Cluster::deliver(WorkerLink& link, const zmq::message_t& payload,
                      const std::function<void(WorkerLink&, const wire::Envelope&)>& on_message) {
  // The envelope delivered before this one is done with.
  decode_arena_.Reset();
  wire::Envelope* envelope = common::decodeEnvelope(payload.data(), payload.size(), decode_arena_);
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
  if (envelope->has_heartbeat() && envelope->heartbeat().echo_master_ns() != 0) {
    // The answer to one of our heartbeats: a clock sample, whatever phase the run is in.
    const auto& beat = envelope->heartbeat();
    link.clock_tracker.add(common::ClockExchange{beat.echo_master_ns(), beat.echo_received_ns(),
                                                 beat.sent_ns(),
                                                 common::steadyNs(link.last_heard)});
  }
  on_message(link, *envelope);
}

bool Cluster::poll(std::chrono::milliseconds timeout,
                   const std::function<void(WorkerLink&, const wire::Envelope&)>& on_message) {
  // One socket for every worker, whatever their number: what a poll costs no longer grows
  // with the cluster.
  std::array<zmq::pollitem_t, 3> items{};
  size_t count = 0;
  items[count++] = {router_->handle(), 0, ZMQ_POLLIN, 0};
  if (zap_)
    items[count++] = {zap_->handle(), 0, ZMQ_POLLIN, 0};
  if (monitor_)
    items[count++] = {monitor_->socket().handle(), 0, ZMQ_POLLIN, 0};
  try {
    if (zmq::poll(items.data(), count, timeout) <= 0)
      return false;
  } catch (const zmq::error_t& e) {
    // A signal (Ctrl-C) interrupts the wait; the caller looks at its flag and comes back.
    if (e.num() == EINTR)
      return false;
    throw;
  }
  bool side_events = false;
  for (size_t i = 1; i < count; ++i)
    side_events = side_events || (items[i].revents & ZMQ_POLLIN);
  if (side_events) {
    if (zap_)
      answerZap();
    takeHandshakeFailures();
  }
  if (!(items[0].revents & ZMQ_POLLIN))
    return false;
  for (;;) {
    frames_.clear();
    if (!zmq::recv_multipart(*router_, std::back_inserter(frames_), zmq::recv_flags::dontwait))
      break;
    WorkerLink* link = frames_.size() == 2 ? linkFor(frames_[0]) : nullptr;
    if (!link) {
      ++garbage_;
      continue;
    }
    deliver(*link, frames_[1], on_message);
  }
  return true;
}

void Cluster::send(WorkerLink& link, wire::Envelope& envelope) {
  envelope.set_protocol(common::kProtocolVersion);
  envelope.set_run_id(run_id_);
  envelope.set_seq(++link.send_seq);
  auto payload = common::encodeEnvelope(envelope);
  try {
    router_->send(zmq::buffer(link.routing_id),
                  zmq::send_flags::sndmore | zmq::send_flags::dontwait);
    router_->send(zmq::buffer(payload), zmq::send_flags::dontwait);
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
  next_heartbeat_ = now + common::kHeartbeatInterval;
  for (auto& link : links_)
    if (std::find(states.begin(), states.end(), link.state) != states.end())
      sendHeartbeat(link);
}

void Cluster::sendHeartbeat(WorkerLink& link) {
  wire::Envelope beat;
  auto* b = beat.mutable_heartbeat();
  const int64_t now_ns = common::steadyNs(clock_.now());
  b->set_sent_ns(now_ns);
  if (link.clock_tracker.samples() > 0) {
    link.clock_model = link.clock_tracker.model();
    auto* c = b->mutable_clock();
    c->set_offset_ns(link.clock_model.offset_ns);
    c->set_ref_master_ns(link.clock_model.ref_master_ns);
    c->set_drift(link.clock_model.drift);
    c->set_error_ns(link.clock_model.error_ns);
    c->set_error_growth(link.clock_model.error_growth);
    // The worker stamps with this model until the next one comes, a heartbeat later; two, to
    // allow for one lost.
    const int64_t until = now_ns + 2 * std::chrono::nanoseconds(common::kHeartbeatInterval).count();
    link.run_clock_error_ns = std::max(link.run_clock_error_ns, link.clock_model.errorAt(until));
  }
  send(link, beat);
}

void Cluster::seedClock(WorkerLink& link) {
  link.clock_tracker.seed(link.samples);
  link.clock_model = link.clock_tracker.model();
  link.run_clock_error_ns = std::max<int64_t>(0, link.rtt_ns / 2);
}

void Cluster::dropMonitors() {
  if (dialled_)
    monitor_.reset();
}

void Cluster::release() {
  wire::Envelope stop;
  stop.mutable_stop();
  broadcast(stop, {LinkState::Joined, LinkState::Ready, LinkState::Refused});
  if (!dialled_ || !router_)
    return;
  // A link that never joined has nothing worth delivering; lingering would keep it dialling
  // after we are gone (and after our ZAP handler is gone), so drop it at once: a disconnect
  // ends that connection with the linger set at the time, and the rest keep theirs.
  router_->set(zmq::sockopt::linger, 0);
  for (auto& link : links_)
    if (link.state == LinkState::Connecting || link.state == LinkState::Busy ||
        (link.state == LinkState::Lost && link.why == "unreachable")) {
      try {
        router_->disconnect(link.endpoint);
      } catch (const zmq::error_t&) {
        // Already gone: nothing left to drop.
      }
    }
  router_->set(zmq::sockopt::linger, 250);
}

uint64_t Cluster::droppedMessages() const {
  uint64_t total = garbage_;
  for (const auto& link : links_)
    total += link.filter.dropped() + link.wrong_run;
  return total;
}

} // namespace stampede::master
