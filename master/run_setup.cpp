#include "master/run_setup.h"

#include "common/config_error.h"
#include "common/protocol.h"
#include "master/console.h"
#include "master/halt_policy.h"
#include "master/interrupt.h"
#include "master/plan_print.h"

#include <fmt/format.h>

#include <algorithm>

namespace stampede::master {
namespace {

using namespace std::chrono_literals;

constexpr int kClockSamples = 5;
// How often the prepare phase polls the workers and heartbeats them while waiting for Ready.
constexpr auto kPreparePoll = 20ms;
// The start barrier lies this far ahead, plus kStartRoundTrips of the slowest worker's round
// trip, so that every worker hears Start before it is due.
constexpr auto kStartMargin = 100ms;
constexpr int kStartRoundTrips = 4;

// Returns an exit code when the cluster cannot start, after printing why in one line each.
std::optional<int> checkHandshake(Cluster& cluster, const CliOptions& cli) {
  std::optional<int> failure;
  size_t joined = 0;
  for (auto& link : cluster.links()) {
    switch (link.state) {
    case LinkState::Joined:
      ++joined;
      break;
    case LinkState::Busy:
      fmt::print(stderr, "{}: busy: {}\n", workerLabel(link), link.why);
      failure = kExitInfrastructure;
      break;
    case LinkState::Refused:
      fmt::print(stderr, "{}: version mismatch: worker speaks {}\n", workerLabel(link), link.why);
      failure = kExitInfrastructure;
      break;
    default:
      if (!link.handshake_failure.empty()) {
        fmt::print(stderr, "{}: handshake refused: {}\n", workerLabel(link),
                   link.handshake_failure);
        failure = kExitInfrastructure;
        break;
      }
      fmt::print(stderr, "{}: did not answer within {} ms\n", workerLabel(link),
                 cli.connect_timeout.count());
      link.state = LinkState::Lost;
      link.why = "unreachable";
      break;
    }
  }
  if (failure)
    return failure;
  size_t wanted = cli.expect_workers > 0 ? size_t(cli.expect_workers) : cluster.links().size();
  size_t needed = cli.min_workers > 0 ? size_t(cli.min_workers) : wanted;
  if (joined < needed) {
    fmt::print(stderr, "{} of {} workers joined, {} needed: not starting\n", joined, wanted,
               needed);
    return kExitInfrastructure;
  }
  if (joined < wanted)
    fmt::print(stderr, "starting with {} of {} workers (--min-workers {})\n", joined, wanted,
               cli.min_workers);
  return std::nullopt;
}

} // namespace

wire::Envelope prepareFor(const common::Scenario& scenario, const CliOptions& cli,
                          const WorkerPlan& plan,
                          const std::vector<std::vector<uint32_t>>& cluster_users) {
  wire::Envelope prepare;
  auto* p = prepare.mutable_prepare();
  p->set_scenario_yaml(scenario.source_text);
  p->set_scenario_file(scenario.file);
  p->set_first_vu(plan.first_vu);
  p->set_duration_us(cli.duration ? cli.duration->count() : 0);
  p->set_rate_share(plan.rate_share);
  p->set_max_in_flight(plan.max_in_flight);
  p->set_iterations(plan.iterations);
  p->set_find_capacity(cli.find_capacity);
  if (!cluster_users.empty())
    p->mutable_cluster_users()->Assign(cluster_users[0].begin(), cluster_users[0].end());
  if (plan.own_users)
    p->mutable_own_users()->Assign(plan.own_users->begin(), plan.own_users->end());
  for (size_t g = 0; g < plan.other_groups.size(); ++g) {
    const GroupPlan& share = plan.other_groups[g];
    auto* group = p->add_other_groups();
    group->set_first_vu(share.first_vu);
    group->set_rate_share(share.rate_share);
    group->set_iterations(share.iterations);
    group->set_max_in_flight(share.max_in_flight);
    if (g + 1 < cluster_users.size())
      group->mutable_cluster_users()->Assign(cluster_users[g + 1].begin(),
                                             cluster_users[g + 1].end());
  }
  for (const auto& override : scenario.overrides)
    p->add_overrides(override);
  for (const auto& [name, value] : scenario.env)
    (*p->mutable_env())[name] = value;
  for (const auto& [name, content] : plan.files)
    (*p->mutable_files())[name] = content;
  return prepare;
}

namespace {

// Room for the envelope's own fields (protocol, run id, sequence) around the Prepare.
constexpr size_t kEnvelopeOverheadBytes = 64;

// Why a Prepare of `bytes` cannot be shipped, naming its largest parts; empty when it fits.
std::string prepareTooLarge(size_t bytes, const common::Scenario& scenario,
                            const WorkerPlan& plan) {
  if (bytes + kEnvelopeOverheadBytes <= size_t(common::kMaxMessageBytes))
    return {};
  auto mib = [](size_t n) { return double(n) / (1 << 20); };
  std::string parts =
      fmt::format("scenario {} {:.1f} MiB", scenario.file, mib(scenario.source_text.size()));
  for (const auto& [name, content] : plan.files)
    parts += fmt::format(", file {} {:.1f} MiB", name, mib(content.size()));
  return fmt::format("the scenario and its files come to {:.1f} MiB ({}), over the control "
                     "channel's limit of {:.0f} MiB per worker: use smaller data files, or "
                     "split them across more workers (split: per_worker)",
                     mib(bytes), parts, mib(size_t(common::kMaxMessageBytes)));
}

// --connect-timeout, plus time for a worker to parse and validate a large Prepare.
constexpr auto kReadyAllowancePerMiB = std::chrono::milliseconds(200);
std::chrono::milliseconds readyTimeout(std::chrono::milliseconds connect_timeout, size_t bytes) {
  return connect_timeout + kReadyAllowancePerMiB * int64_t(bytes >> 20);
}

} // namespace

std::optional<int> handshake(RunContext& run) {
  const CliOptions& cli = run.cli;
  run.cluster.handshake(cli.connect_timeout, kClockSamples, size_t(cli.expect_workers),
                        [] { return interrupted(); });
  if (interrupted())
    return kExitInterrupted; // the caller's release frees the workers that joined
  if (auto failure = checkHandshake(run.cluster, cli))
    return *failure;
  run.cluster.dropMonitors(); // their work is done: keep the run's poll set to one socket a worker
  return std::nullopt;
}

std::optional<int> shareOut(RunContext& run) {
  const CliOptions& cli = run.cli;
  const common::Scenario& scenario = run.scenario;
  auto& joined = run.joined;
  // Shares in proportion to weight and threads: deterministic, shown by --dry-run.
  for (auto& link : run.cluster.links())
    if (link.state == LinkState::Joined)
      joined.push_back(&link);
  std::vector<double> capacity;
  for (auto* link : joined)
    capacity.push_back(link->address.weight * std::max(1u, link->threads));
  try {
    run.plans = planWorkers(scenario, capacity);
  } catch (const common::ConfigError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return kExitInvalid;
  }
  const auto& plans = run.plans;
  run.cluster_users.clear();
  for (size_t g = 0; g < scenario.groups.size(); ++g)
    run.cluster_users.push_back(clusterUsers(plans, g));
  for (size_t i = 0; i < joined.size(); ++i) {
    joined[i]->index = static_cast<uint32_t>(i);
    joined[i]->users = totalUsers(plans[i]);
  }
  // Refused before anything is shipped (and by --dry-run): ZeroMQ drops an oversized message
  // without a word, and the worker would never answer.
  for (size_t i = 0; i < plans.size(); ++i) {
    const size_t bytes = prepareFor(scenario, cli, plans[i], run.cluster_users).ByteSizeLong();
    run.largest_prepare = std::max(run.largest_prepare, bytes);
    if (auto why = prepareTooLarge(bytes, scenario, plans[i]); !why.empty()) {
      fmt::print(stderr, "{}: {}\n", workerLabel(*joined[i]), why);
      return kExitInvalid;
    }
  }
  if (cli.dry_run) {
    printPlan(scenario, run.cluster, plans);
    return kExitPassed;
  }
  return std::nullopt;
}

std::optional<int> prepare(RunContext& run) {
  const CliOptions& cli = run.cli;
  auto& cluster = run.cluster;
  const auto& joined = run.joined;
  for (auto* link : joined) {
    wire::Envelope welcome;
    auto* w = welcome.mutable_welcome();
    w->set_worker_index(link->index);
    w->set_worker_count(static_cast<uint32_t>(joined.size()));
    w->set_clock_offset_ns(link->clock_offset_ns);
    w->set_heartbeat_timeout_ms(static_cast<uint32_t>(cli.heartbeat_timeout.count()));
    cluster.send(*link, welcome);
    wire::Envelope prepare =
        prepareFor(run.scenario, cli, run.plans[link->index], run.cluster_users);
    cluster.send(*link, prepare);
  }
  // The workers parse and validate what they were shipped: a large Prepare takes longer.
  const auto ready_timeout = readyTimeout(cli.connect_timeout, run.largest_prepare);
  const auto prepare_deadline = run.clock.now() + ready_timeout;
  auto pending = [&] {
    return std::count_if(joined.begin(), joined.end(),
                         [](auto* l) { return l->state == LinkState::Joined; });
  };
  while (pending() > 0 && run.clock.now() < prepare_deadline && !interrupted()) {
    cluster.heartbeat({LinkState::Joined, LinkState::Ready});
    cluster.poll(kPreparePoll, [&](WorkerLink& link, const wire::Envelope& e) {
      if (e.has_ready() && link.state == LinkState::Joined)
        link.state = LinkState::Ready;
      if (e.has_refused()) {
        link.state = LinkState::Refused;
        link.why = e.refused().reason();
      }
    });
  }
  if (interrupted())
    return kExitInterrupted; // the caller's release frees the workers that joined
  for (auto* link : joined) {
    if (link->state == LinkState::Refused) {
      fmt::print(stderr, "{}: refused the scenario: {}\n", workerLabel(*link), link->why);
      return kExitInfrastructure;
    }
    if (link->state != LinkState::Ready) {
      fmt::print(stderr, "{}: not ready within {} ms\n", workerLabel(*link), ready_timeout.count());
      return kExitInfrastructure;
    }
  }
  return std::nullopt;
}

// "200 users", "2000/s", or each flow's: "200 users (subscriber) + 2000/s (publisher)".
std::string describeLoad(const common::Scenario& scenario) {
  std::string out;
  for (const auto& group : scenario.groups) {
    if (!out.empty())
      out += " + ";
    out += group.open() ? fmt::format("{:g}/s", group.load.peak())
                        : fmt::format("{} users", group.load.users);
    if (scenario.groups.size() > 1)
      out += group.flows.size() == 1
                 ? fmt::format(" ({})", printable(scenario.flows[group.flows[0]].name))
                 : std::string(" (shared)");
  }
  return out;
}

void start(RunContext& run) {
  const common::Scenario& scenario = run.scenario;
  const auto& joined = run.joined;
  // Start barrier: one absolute time on the master's clock, far enough ahead for every
  // worker to hear it first.
  int64_t max_rtt_ns = 0;
  for (auto* link : joined)
    max_rtt_ns = std::max(max_rtt_ns, link->rtt_ns);
  run.t0 = run.clock.now() + kStartMargin + std::chrono::nanoseconds(kStartRoundTrips * max_rtt_ns);
  run.end_at = run.t0 + scenario.length();
  wire::Envelope start;
  start.mutable_start()->set_start_master_ns(common::steadyNs(run.t0));
  run.cluster.broadcast(start, {LinkState::Ready});
  for (auto* link : joined) {
    link->state = LinkState::Running;
    link->last_heard = run.clock.now();
  }
  if (!run.cli.quiet)
    fmt::print("stampede: \"{}\" against {}://{}:{}, {} on {} worker{}, {:.0f}s\n",
               printable(scenario.name), scenario.target.scheme, scenario.target.host,
               scenario.target.port,
               scenario.capacity
                   ? fmt::format("capacity search from {:g}/s", scenario.capacity->start)
                   : describeLoad(scenario),
               joined.size(), joined.size() == 1 ? "" : "s", seconds(scenario.length()));
}

} // namespace stampede::master
