#include "master/rejoin.h"

#include "master/run_setup.h"

#include <fmt/format.h>

#include <algorithm>

namespace stampede::master {
namespace {

using namespace std::chrono_literals;
using common::SteadyTime;

// How often a lost worker is probed: modest, a dead host costs one small message a second.
constexpr auto kProbeInterval = 1s;
// Clock samples taken from a worker that answers again before it is welcomed back.
constexpr size_t kRejoinSamples = 3;
// Its Start lies this far ahead plus four of its round trips, as the run's own start did.
constexpr auto kJoinMargin = 100ms;
constexpr int kJoinRoundTrips = 4;
// Not worth rejoining for less than this of the run.
constexpr auto kMinRemaining = 2s;

} // namespace

Rejoiner::Rejoiner(RunContext& run)
    : run_(run),
      enabled_(run.scenario.halt.on_worker_lost == common::HaltSpec::OnWorkerLost::Rejoin),
      reverse_(!run.cli.listen.empty()) {}

bool Rejoiner::tooLate(SteadyTime now) const {
  return now + kMinRemaining >= run_.end_at;
}

void Rejoiner::onLost(WorkerLink& link, SteadyTime now) {
  link.events.push_back({seconds(now - run_.t0), "lost"});
  if (!enabled_)
    return;
  if (reverse_) {
    vacant_.push_back(&link);
    return;
  }
  // A restarted worker numbers its messages from 1 again.
  link.filter.reset();
  link.samples.clear();
  attempts_[&link] = Attempt{.next_probe = now};
}

void Rejoiner::sendProbe(WorkerLink& link, SteadyTime now) {
  wire::Envelope probe;
  probe.mutable_probe()->set_master_ns(common::steadyNs(now));
  run_.cluster.send(link, probe);
}

void Rejoiner::probe(SteadyTime now) {
  for (auto it = attempts_.begin(); it != attempts_.end();) {
    WorkerLink& link = *it->first;
    Attempt& attempt = it->second;
    if (tooLate(now)) {
      it = attempts_.erase(it);
      continue;
    }
    if (link.state == LinkState::Joined && now >= attempt.ready_deadline) {
      fmt::print(stderr, "\n{}: answered again but was not ready within {} ms: still lost\n",
                 workerLabel(link), run_.cli.connect_timeout.count());
      link.state = LinkState::Lost;
      attempt.samples.clear();
    }
    if (now >= attempt.next_probe) {
      attempt.next_probe = now + kProbeInterval;
      if (link.state == LinkState::Lost) {
        sendProbe(link, now);
      } else if (link.state == LinkState::Joined) {
        run_.cluster.sendHeartbeat(link);
      }
    }
    ++it;
  }
}

bool Rejoiner::waiting(SteadyTime now) const {
  return (!attempts_.empty() || !vacant_.empty()) && !tooLate(now);
}

void Rejoiner::admit(WorkerLink& link, SteadyTime now) {
  WorkerLink& place = *vacant_.front();
  vacant_.erase(vacant_.begin());
  link.index = place.index;
  link.users = place.users;
  fmt::print(stderr, "\n{}: dialled in mid-run: takes the place of {}\n", workerLabel(link),
             workerLabel(place));
  attempts_[&link] = Attempt{.next_probe = now + kProbeInterval};
  link.state = LinkState::Lost; // until it has answered our probes and is Ready
  link.why = fmt::format("dialled in mid-run in the place of {}; not ready yet", place.name);
  sendProbe(link, now);
}

void Rejoiner::welcome(WorkerLink& link, Attempt& attempt, SteadyTime now) {
  const auto estimate = common::estimateOffset(attempt.samples);
  link.samples = attempt.samples;
  link.clock_offset_ns = estimate.offset_ns;
  link.rtt_ns = estimate.rtt_ns;
  Cluster::seedClock(link);
  wire::Envelope welcome;
  auto* w = welcome.mutable_welcome();
  w->set_worker_index(link.index);
  w->set_worker_count(static_cast<uint32_t>(run_.plans.size()));
  w->set_clock_offset_ns(link.clock_offset_ns);
  w->set_heartbeat_timeout_ms(static_cast<uint32_t>(run_.cli.heartbeat_timeout.count()));
  run_.cluster.send(link, welcome);
  // The lost worker's own share: the cluster's total is the scenario's again.
  wire::Envelope prepare =
      prepareFor(run_.scenario, run_.cli, run_.plans[link.index], run_.cluster_users);
  run_.cluster.send(link, prepare);
  link.state = LinkState::Joined;
  attempt.ready_deadline = now + run_.cli.connect_timeout;
  attempt.next_probe = now + kProbeInterval;
}

void Rejoiner::startRejoined(WorkerLink& link, SteadyTime now) {
  const SteadyTime join_at =
      now + kJoinMargin + std::chrono::nanoseconds(kJoinRoundTrips * link.rtt_ns);
  wire::Envelope start;
  start.mutable_start()->set_start_master_ns(common::steadyNs(run_.t0));
  start.mutable_start()->set_join_master_ns(common::steadyNs(join_at));
  run_.cluster.send(link, start);
  link.state = LinkState::Running;
  link.why.clear();
  link.last_heard = now;
  link.final_received = false;
  if (std::find(run_.joined.begin(), run_.joined.end(), &link) == run_.joined.end())
    run_.joined.push_back(&link); // a new worker in a lost one's place (reverse mode)
  const double at_s = seconds(join_at - run_.t0);
  link.events.push_back({at_s, "joined"});
  fmt::print(stderr, "\n{}: rejoined the run at {:.1f}s with its share ({} users)\n",
             workerLabel(link), at_s, link.users);
}

bool Rejoiner::onMessage(WorkerLink& link, const wire::Envelope& e, SteadyTime now) {
  auto it = attempts_.find(&link);
  if (it == attempts_.end()) {
    // Reverse mode: a worker announcing itself mid-run (Hello without our probe's time).
    if (reverse_ && link.state == LinkState::Connecting && e.has_hello() &&
        e.hello().master_ns() == 0 && !vacant_.empty() && !tooLate(now)) {
      admit(link, now);
      return true;
    }
    return false;
  }
  Attempt& attempt = it->second;
  if (link.state == LinkState::Lost && e.has_hello()) {
    const auto& hello = e.hello();
    if (hello.master_ns() == 0)
      return true; // not an answer to our probe
    if (hello.protocol() != common::kProtocolVersion) {
      link.why = fmt::format("answered again with protocol version {} (this master speaks {})",
                             hello.protocol(), common::kProtocolVersion);
      attempts_.erase(it);
      return true;
    }
    link.build = hello.build();
    link.cores = hello.cores();
    link.threads = hello.threads();
    attempt.samples.push_back(
        {hello.master_ns(), hello.worker_ns(), common::steadyNs(run_.clock.now())});
    if (attempt.samples.size() < kRejoinSamples)
      sendProbe(link, now);
    else if (!tooLate(now))
      welcome(link, attempt, now);
    return true;
  }
  if (link.state == LinkState::Joined && e.has_ready()) {
    startRejoined(link, now);
    attempts_.erase(it);
    return true;
  }
  if (link.state == LinkState::Joined && e.has_refused()) {
    link.state = LinkState::Lost;
    link.why = fmt::format("refused the scenario on rejoining: {}", e.refused().reason());
    fmt::print(stderr, "\n{}: {}\n", workerLabel(link), link.why);
    attempts_.erase(it);
    return true;
  }
  return e.has_hello() || e.has_ready();
}

} // namespace stampede::master
