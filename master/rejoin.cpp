#include "master/rejoin.h"

#include "master/replan.h"
#include "master/run_setup.h"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

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
      reverse_(!run.cli.listen.empty()) {
  for (const auto& plan : run.plans)
    next_first_vu_ = std::max(next_first_vu_, plan.first_vu + plan.max_in_flight);
}

bool Rejoiner::tooLate(SteadyTime now) const {
  return now + kMinRemaining >= run_.end_at;
}

void Rejoiner::onLost(WorkerLink& link, SteadyTime now) {
  link.events.push_back({seconds(now - run_.t0), "lost", link.why});
  noteNews(fmt::format("lost {}", link.name));
  if (!enabled_)
    return;
  if (reverse_) {
    vacant_.push_back(&link);
    return;
  }
  // A restarted worker numbers its messages from 1 again.
  link.filter.reset();
  link.samples.clear();
  Attempt attempt;
  attempt.next_probe = now;
  attempt.join_reason = "answered again after its loss";
  attempts_[&link] = std::move(attempt);
}

void Rejoiner::onLeft(WorkerLink& link, SteadyTime now) {
  link.events.push_back({seconds(now - run_.t0), "left", link.why});
  noteNews(fmt::format("left {}", link.name));
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
      if (it->second.extra)
        extra_pending_ = false;
      it = attempts_.erase(it);
      continue;
    }
    if (link.state == LinkState::Joined && now >= attempt.ready_deadline) {
      fmt::print(stderr, "\n{}: answered again but was not ready within {} ms: still lost\n",
                 workerLabel(link), run_.cli.connect_timeout.count());
      link.state = LinkState::Lost;
      attempt.samples.clear();
      attempt.replan.reset(); // computed again at its next welcome
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
  link.feeder_positions = place.feeder_positions;
  link.feeder_last_step = place.feeder_last_step;
  fmt::print(stderr, "\n{}: dialled in mid-run: takes the place of {}\n", workerLabel(link),
             workerLabel(place));
  startProbing(link, fmt::format("dialled in, in the place of {}", place.name), false, now);
}

void Rejoiner::startProbing(WorkerLink& link, std::string reason, bool extra, SteadyTime now) {
  Attempt attempt;
  attempt.next_probe = now + kProbeInterval;
  attempt.join_reason = std::move(reason);
  attempt.extra = extra;
  link.why = fmt::format("{}; not ready yet", attempt.join_reason);
  attempts_[&link] = std::move(attempt);
  link.state = LinkState::Lost; // until it has answered our probes and is Ready
  sendProbe(link, now);
}

// Reverse mode: a worker announcing itself while the run goes on, with no lost place to take.
void Rejoiner::admitOrRefuse(WorkerLink& link, SteadyTime now) {
  const size_t most = size_t(std::max(run_.cli.max_workers, run_.cli.expect_workers));
  std::string why;
  // Places, not workers running: a lost worker's place is taken again only under
  // on_worker_lost: rejoin (then it is vacant, and filled before any new place is made).
  const size_t places = run_.plans.size();
  if (places >= most)
    why = most > size_t(run_.cli.expect_workers)
              ? fmt::format("the run already has {} workers (--max-workers {})", places, most)
              : fmt::format("the run already has its {} workers (--expect-workers {}; "
                            "--max-workers admits more)",
                            most, run_.cli.expect_workers);
  else if (auto no = whyNoReplan(run_.scenario); !no.empty())
    why = "the shares cannot be re-planned mid-run: " + no;
  if (!why.empty()) {
    link.state = LinkState::Refused;
    link.why = "dialled in mid-run and was refused: " + why;
    fmt::print(stderr, "\n{}: {}\n", workerLabel(link), link.why);
    return;
  }
  if (extra_pending_)
    return; // one newcomer re-plans at a time: this one is admitted when it announces again
  extra_pending_ = true;
  fmt::print(stderr,
             "\n{}: dialled in mid-run: admitted as worker {} of at most {} (--max-workers); "
             "every share is re-planned\n",
             workerLabel(link), places + 1, most);
  startProbing(
      link,
      fmt::format("dialled in mid-run, admitted as worker {} of at most {}", places + 1, most),
      true, now);
}

bool Rejoiner::welcome(WorkerLink& link, Attempt& attempt, SteadyTime now) {
  const auto estimate = common::estimateOffset(attempt.samples);
  link.samples = attempt.samples;
  link.clock_offset_ns = estimate.offset_ns;
  link.rtt_ns = estimate.rtt_ns;
  Cluster::seedClock(link);
  const WorkerPlan* plan = nullptr;
  // By load group; a newcomer's re-plan changes group 0's, the only one (whyNoReplan).
  std::vector<std::vector<uint32_t>> cluster_users = run_.cluster_users;
  if (attempt.extra) {
    // Every place's share anew with the newcomer's: in force when it joins (startRejoined).
    link.index = static_cast<uint32_t>(run_.plans.size());
    std::vector<std::vector<uint64_t>> reached(run_.plans.size());
    for (const auto* holder : run_.joined) // the latest holder of each place counts
      if (holder->index < reached.size())
        reached[holder->index] = feederReach(holder->feeder_positions, holder->feeder_last_step);
    attempt.replan = replanForNewcomer(run_.scenario, run_.plans, run_.cluster_users.at(0),
                                       capacities(link), next_first_vu_, reached);
    if (!attempt.replan->refused.empty()) {
      link.state = LinkState::Refused;
      link.why = "dialled in mid-run and was refused: " + attempt.replan->refused;
      fmt::print(stderr, "\n{}: {}\n", workerLabel(link), link.why);
      return false;
    }
    plan = &attempt.replan->plans.back();
    cluster_users.at(0) = attempt.replan->cluster_users;
    link.users = plan->users;
  } else {
    plan = &run_.plans[link.index];
  }
  wire::Envelope welcome;
  auto* w = welcome.mutable_welcome();
  w->set_worker_index(link.index);
  w->set_worker_count(static_cast<uint32_t>(cluster_users.at(0).size()));
  w->set_clock_offset_ns(link.clock_offset_ns);
  w->set_heartbeat_timeout_ms(static_cast<uint32_t>(run_.cli.heartbeat_timeout.count()));
  run_.cluster.send(link, welcome);
  // The lost worker's own share (the cluster's total is the scenario's again), its feeders
  // past every row the place had used; or the newcomer's share of the re-plan.
  wire::Envelope prepare = prepareFor(run_.scenario, run_.cli, *plan, cluster_users);
  for (const uint64_t start : feederStart(link.feeder_positions, link.feeder_last_step))
    prepare.mutable_prepare()->add_feeder_start(start);
  run_.cluster.send(link, prepare);
  link.state = LinkState::Joined;
  attempt.ready_deadline = now + run_.cli.connect_timeout;
  attempt.next_probe = now + kProbeInterval;
  return true;
}

void Rejoiner::noteNews(std::string text) {
  news_ += (news_.empty() ? "" : "; ") + text;
}

std::string Rejoiner::takeNews() {
  return std::exchange(news_, {});
}

std::vector<double> Rejoiner::capacities(const WorkerLink& newcomer) const {
  std::vector<double> capacity(run_.plans.size(), 0);
  auto of = [](const WorkerLink& l) { return l.address.weight * std::max(1u, l.threads); };
  // The link that holds each place now (a replacement comes after the lost one in `joined`).
  for (const auto* link : run_.joined)
    if (link->index < capacity.size())
      capacity[link->index] = of(*link);
  capacity.push_back(of(newcomer));
  return capacity;
}

// The newcomer joins at `join_at`: from then on every running place has its re-planned share.
void Rejoiner::applyReplan(Replan replan, SteadyTime join_at) {
  const auto count = static_cast<uint32_t>(replan.plans.size());
  for (auto* link : run_.joined) {
    if (link->state != LinkState::Running || link->index >= replan.retire.size())
      continue;
    const WorkerPlan& plan = replan.plans[link->index];
    wire::Envelope reshare;
    auto* r = reshare.mutable_reshare();
    r->set_rate_share(plan.rate_share);
    r->set_max_in_flight(plan.max_in_flight);
    r->set_worker_count(count);
    r->set_from_ns(common::steadyNs(join_at));
    const auto& retire = replan.retire[link->index];
    r->mutable_retire_users()->Assign(retire.begin(), retire.end());
    const auto& keep = replan.keep_rows[link->index];
    r->mutable_keep_rows()->Assign(keep.begin(), keep.end());
    run_.cluster.send(*link, reshare);
    link->users = plan.users;
  }
  run_.plans = std::move(replan.plans);
  run_.cluster_users.at(0) = std::move(replan.cluster_users);
  next_first_vu_ = replan.next_first_vu;
}

void Rejoiner::startRejoined(WorkerLink& link, Attempt& attempt, SteadyTime now) {
  const SteadyTime join_at =
      now + kJoinMargin + std::chrono::nanoseconds(kJoinRoundTrips * link.rtt_ns);
  if (attempt.replan) {
    applyReplan(std::move(*attempt.replan), join_at);
    attempt.replan.reset();
    extra_pending_ = false;
  }
  wire::Envelope start;
  start.mutable_start()->set_start_master_ns(common::steadyNs(run_.t0));
  start.mutable_start()->set_join_master_ns(common::steadyNs(join_at));
  run_.cluster.send(link, start);
  link.state = LinkState::Running;
  link.why.clear();
  link.last_heard = now;
  link.final_received = false;
  if (std::find(run_.joined.begin(), run_.joined.end(), &link) == run_.joined.end())
    run_.joined.push_back(&link); // a new worker in a lost one's place, or beyond (reverse mode)
  const double at_s = seconds(join_at - run_.t0);
  link.events.push_back({at_s, "joined", attempt.join_reason});
  noteNews(fmt::format("joined {}", link.name));
  const auto& plan = run_.plans[link.index];
  fmt::print(stderr, "\n{}: {} the run at {:.1f}s with its share ({})\n", workerLabel(link),
             attempt.extra ? "joined" : "rejoined", at_s,
             run_.scenario.load.model == common::LoadSpec::Model::Open
                 ? fmt::format("{:.1f}% of the rate, {} in flight", plan.rate_share * 100,
                               plan.max_in_flight)
                 : fmt::format("{} users", link.users));
}

bool Rejoiner::onMessage(WorkerLink& link, const wire::Envelope& e, SteadyTime now,
                         bool admitting) {
  auto it = attempts_.find(&link);
  if (it == attempts_.end()) {
    // Reverse mode: a worker announcing itself mid-run (Hello without our probe's time).
    if (reverse_ && link.state == LinkState::Connecting && e.has_hello() &&
        e.hello().master_ns() == 0 && admitting && !tooLate(now)) {
      if (!vacant_.empty())
        admit(link, now);
      else
        admitOrRefuse(link, now);
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
      extra_pending_ = extra_pending_ && !attempt.extra;
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
    else if (!tooLate(now) && !welcome(link, attempt, now)) {
      extra_pending_ = false;
      attempts_.erase(it);
    }
    return true;
  }
  if (link.state == LinkState::Joined && e.has_ready()) {
    startRejoined(link, attempt, now);
    attempts_.erase(it);
    return true;
  }
  if (link.state == LinkState::Joined && e.has_refused()) {
    link.state = LinkState::Lost;
    link.why = fmt::format("refused the scenario on rejoining: {}", e.refused().reason());
    fmt::print(stderr, "\n{}: {}\n", workerLabel(link), link.why);
    extra_pending_ = extra_pending_ && !attempt.extra;
    attempts_.erase(it);
    return true;
  }
  return e.has_hello() || e.has_ready();
}

} // namespace stampede::master
