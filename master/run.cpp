#include "master/run.h"

#include "common/config_error.h"
#include "common/keys.h"
#include "common/load_plan.h"
#include "common/protocol.h"
#include "common/scenario.h"
#include "master/cluster.h"
#include "master/console.h"
#include "master/env_file.h"
#include "master/halt_policy.h"
#include "master/hosts_file.h"
#include "master/interval_rows.h"
#include "master/plan.h"
#include "master/report.h"
#include "master/thresholds.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <random>
#include <thread>
#include <unistd.h>

namespace stampede::master {
namespace {

using namespace std::chrono_literals;
using common::SteadyTime;

constexpr int kClockSamples = 5;

// 1 after the first Ctrl-C (stop gracefully), 2 after the second (stop now).
volatile std::sig_atomic_t g_interrupted = 0;

extern "C" void onAlarm(int) {
  _exit(130);
}

extern "C" void onInterrupt(int) {
  // A second Ctrl-C means "now": the operator gave up on the graceful stop. The control
  // thread tells the running workers first (exitNow); should it be stuck somewhere, the alarm
  // exits anyway a second later.
  if (g_interrupted) {
    g_interrupted = 2;
    // Armed only now (sigaction is async-signal-safe): no SIGALRM is ours before.
    struct sigaction on_alarm {};
    on_alarm.sa_handler = onAlarm;
    sigaction(SIGALRM, &on_alarm, nullptr);
    alarm(1);
    return;
  }
  g_interrupted = 1;
}

// The second Ctrl-C: Halt to every running worker and Stop to those waiting to start, so that
// none keeps loading until its master-silence timeout, then exit without a report.
[[noreturn]] void exitNow(Cluster& cluster) {
  wire::Envelope halt;
  halt.mutable_halt()->set_reason(wire::HALT_REASON_INTERRUPTED);
  cluster.broadcast(halt, {LinkState::Running});
  wire::Envelope stop;
  stop.mutable_stop();
  cluster.broadcast(stop, {LinkState::Joined, LinkState::Ready});
  // Sends are queued: give ZeroMQ's I/O thread a moment to put them on the wire.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::fflush(stdout);
  _exit(130);
}

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

wire::HaltReason toWire(HaltReason reason) {
  switch (reason) {
  case HaltReason::FirstError:
    return wire::HALT_REASON_FIRST_ERROR;
  case HaltReason::ErrorCount:
    return wire::HALT_REASON_ERROR_COUNT;
  case HaltReason::ErrorRate:
    return wire::HALT_REASON_ERROR_RATE;
  case HaltReason::Threshold:
    return wire::HALT_REASON_THRESHOLD;
  case HaltReason::DataExhausted:
    return wire::HALT_REASON_DATA_EXHAUSTED;
  case HaltReason::Interrupted:
    return wire::HALT_REASON_INTERRUPTED;
  case HaltReason::WorkerLost:
    return wire::HALT_REASON_WORKER_LOST;
  }
  return wire::HALT_REASON_UNSPECIFIED;
}

// Half the round trip of the sample the offset came from: how wrong the offset can be.
double clockErrorMs(const WorkerLink& link) {
  return link.rtt_ns > 0 ? double(link.rtt_ns) / 2e6 : 0.0;
}

double millis(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Prints the live line once a second (what arrived in that second) and keeps the cumulative
// book. timeseries.csv is IntervalRows' (by when the requests happened).
class Progress {
public:
  Progress(const CliOptions& cli, size_t steps, double total_s)
      : quiet_(cli.quiet), tty_(!cli.quiet && ::isatty(STDOUT_FILENO)), total_s_(total_s),
        cumulative_(steps), interval_(steps) {}

  common::StatsBook& interval() { return interval_; }
  common::StatsBook& book() { return cumulative_; }

  void tick(double elapsed_s, double interval_s, int users, int alive, int total) {
    cumulative_.merge(interval_);
    auto interval_total = interval_.total();
    interval_.reset();
    auto running_total = cumulative_.total();
    // The last tick of a run may cover a few milliseconds: its rate would be noise.
    if (quiet_ || interval_s < 0.25)
      return;
    LiveFigures f;
    f.elapsed_s = elapsed_s;
    f.total_s = total_s_;
    f.users = users;
    f.rps = interval_s > 0 ? double(interval_total.requests) / interval_s : 0;
    f.p50_ms = interval_total.latency_us.percentileUs(50) / 1000.0;
    f.p99_ms = interval_total.latency_us.percentileUs(99) / 1000.0;
    f.errors = running_total.errors;
    f.requests = running_total.requests;
    f.workers_alive = alive;
    f.workers_total = total;
    if (tty_)
      fmt::print("\r\033[K{}", formatLiveLine(f, true));
    else
      fmt::print("{}\n", formatLiveLine(f, false));
    std::fflush(stdout);
  }

  void end() {
    if (tty_)
      fmt::print("\n");
  }

private:
  bool quiet_;
  bool tty_;
  double total_s_;
  common::StatsBook cumulative_;
  common::StatsBook interval_;
};

std::string workerLabel(const WorkerLink& link) {
  return link.name.empty() ? std::string("worker") : fmt::format("worker {}", link.name);
}

// --out must be writable, but nothing is written into it before the run starts: a run that
// never starts leaves the previous run's files as they were.
std::string checkWritable(const std::string& dir) {
  auto probe = std::filesystem::path(dir) / fmt::format(".stampede-probe-{}", ::getpid());
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0)
    return fmt::format("{}: cannot write: {}", dir, std::strerror(errno));
  ::close(fd);
  ::unlink(probe.c_str());
  return "";
}

// When a delta was cut, on our clock. A sender that does not say (0), or says nonsense, is
// taken to have cut it when it arrived.
SteadyTime cutTime(const wire::Stats& stats, SteadyTime t0, SteadyTime now) {
  const auto at = common::fromSteadyNs(stats.at_master_ns());
  return stats.at_master_ns() != 0 && at > t0 - 1s && at < now + 1s ? at : now;
}

// What a worker lost mid-run did after its last Stats, which never reached us.
struct LostWorker {
  double lost_at_s = 0;
  std::optional<double> last_stats_at_s;
  // Its last interval's rate times the time from that Stats to when it stopped. It stopped
  // after it was last heard from and before its next Stats was due (each comes every
  // second): the estimate takes the middle, low and high the ends.
  std::optional<uint64_t> estimate, low, high;
};

LostWorker estimateLost(const WorkerLink& link, const std::optional<IntervalRows::Pace>& pace,
                        SteadyTime t0, SteadyTime now, SteadyTime end_at) {
  LostWorker lost;
  lost.lost_at_s = seconds(now - t0);
  if (!pace)
    return lost;
  lost.last_stats_at_s = seconds(pace->last_at - t0);
  double rate = 0;
  if (pace->last_span_s >= 0.2)
    rate = double(pace->last_requests) / pace->last_span_s;
  else if (pace->last_at > t0)
    rate = double(link.requests) / seconds(pace->last_at - t0);
  const SteadyTime from = std::min(std::max(link.last_heard, pace->last_at), end_at);
  const SteadyTime to = std::max(from, std::min(pace->last_at + 1s, end_at));
  auto requests = [&](SteadyTime t) {
    return static_cast<uint64_t>(std::llround(rate * std::max(0.0, seconds(t - pace->last_at))));
  };
  lost.low = requests(from);
  lost.high = requests(to);
  lost.estimate = requests(from + (to - from) / 2);
  return lost;
}

std::string describeLost(const WorkerLink& link, const LostWorker& lost) {
  std::string text =
      fmt::format("{} lost at {:.1f}s into the run ({}): {} requests and {} "
                  "errors received from it",
                  workerLabel(link), lost.lost_at_s, link.why, link.requests, link.errors);
  if (lost.estimate)
    text += fmt::format(", the last counted by {:.1f}s; an estimated {} more requests ({} to {}) "
                        "it made after that were never reported and are in no total",
                        *lost.last_stats_at_s, *lost.estimate, *lost.low, *lost.high);
  else
    text += "; it sent no stats, so what it did is unknown";
  if (link.users)
    text += fmt::format("; its {} users stopped with it", link.users);
  return text;
}

// A worker stopped by its operator mid-run, whose Final said so: not lost, since its figures are
// complete; the run goes on with the others and ends as it would have (the report warns).
void noteLeft(WorkerLink& link, double at_s) {
  link.state = LinkState::Left;
  link.why = fmt::format("stopped (SIGINT or SIGTERM) at {:.1f}s; its figures are complete", at_s);
  fmt::print(stderr, "\n{}: left the run: {}\n", workerLabel(link), link.why);
}

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
      failure = 3;
      break;
    case LinkState::Refused:
      fmt::print(stderr, "{}: version mismatch: worker speaks {}\n", workerLabel(link), link.why);
      failure = 3;
      break;
    default:
      if (!link.handshake_failure.empty()) {
        fmt::print(stderr, "{}: handshake refused: {}\n", workerLabel(link),
                   link.handshake_failure);
        failure = 3;
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
    return 3;
  }
  if (joined < wanted)
    fmt::print(stderr, "starting with {} of {} workers (--min-workers {})\n", joined, wanted,
               cli.min_workers);
  return std::nullopt;
}

void printPlan(const common::Scenario& scenario, Cluster& cluster,
               const std::vector<WorkerPlan>& plans) {
  const auto& load = scenario.load;
  const bool open = load.model == common::LoadSpec::Model::Open;
  fmt::print("plan: \"{}\" against {}://{}:{}, {} model, {:.1f}s: {}\n", scenario.name,
             scenario.target.scheme, scenario.target.host, scenario.target.port,
             open ? "open" : "closed", seconds(load.total()), common::describeStages(load));
  if (open)
    fmt::print("  rate up to {:g}/s, max_in_flight {}\n", load.peak(),
               load.max_in_flight ? load.max_in_flight : common::kDefaultMaxInFlight);
  if (load.iterations > 0)
    fmt::print("  stops after {} iterations\n", load.iterations);
  for (const auto& override : scenario.overrides)
    fmt::print("  --set {}\n", override);
  double total_weight = 0;
  for (const auto& flow : scenario.flows)
    total_weight += flow.weight;
  for (const auto& flow : scenario.flows)
    fmt::print("  flow {:<24} weight {:g} ({:.0f}%)\n", "\"" + flow.name + "\"", flow.weight,
               100 * flow.weight / total_weight);
  for (const auto& feeder : scenario.data)
    fmt::print("  data {:<24} {} rows from {}, {}\n", "\"" + feeder.name + "\"", feeder.rows.size(),
               feeder.file,
               feeder.split == common::Feeder::Split::Shared ? "shared" : "split per worker");
  fmt::print("  {:<4} {:<28} {:>7} {:>6} {:>9} {:>10} {:>10}", "id", "worker", "threads", "weight",
             open ? "rate/s" : "users", open ? "in flight" : "", "offset ms");
  if (load.iterations > 0)
    fmt::print(" {:>10}", "iterations");
  for (const auto& feeder : scenario.data)
    fmt::print(" {:>10}", feeder.name);
  fmt::print("\n");
  size_t i = 0;
  for (const auto& link : cluster.links()) {
    if (link.state != LinkState::Joined)
      continue;
    const WorkerPlan& plan = plans[i++];
    fmt::print("  {:<4} {:<28} {:>7} {:>6g} ", link.index, link.name, link.threads,
               link.address.weight);
    if (open)
      fmt::print("{:>9.1f} {:>10}", load.peak() * plan.rate_share, plan.max_in_flight);
    else
      fmt::print("{:>9} {:>10}", plan.users, ""); // users interleave: no block to show
    fmt::print(" {:>10.3f}", link.clock_offset_ns / 1e6);
    if (load.iterations > 0)
      fmt::print(" {:>10}", plan.iterations);
    for (size_t rows : plan.feeder_rows)
      fmt::print(" {:>10}", rows);
    fmt::print("\n");
  }
}

// The Prepare envelope for one worker's share: the scenario, its overrides and env() values,
// and the data files cut to that worker.
wire::Envelope prepareFor(const common::Scenario& scenario, const CliOptions& cli,
                          const WorkerPlan& plan, const std::vector<uint32_t>& cluster_users) {
  wire::Envelope prepare;
  auto* p = prepare.mutable_prepare();
  p->set_scenario_yaml(scenario.source_text);
  p->set_scenario_file(scenario.file);
  p->set_users(plan.users);
  p->set_first_vu(plan.first_vu);
  p->set_duration_us(cli.duration ? cli.duration->count() : 0);
  p->set_rate_share(plan.rate_share);
  p->set_max_in_flight(plan.max_in_flight);
  p->set_iterations(plan.iterations);
  p->mutable_cluster_users()->Assign(cluster_users.begin(), cluster_users.end());
  for (const auto& override : scenario.overrides)
    p->add_overrides(override);
  for (const auto& [name, value] : scenario.env)
    (*p->mutable_env())[name] = value;
  for (const auto& [name, content] : plan.files)
    (*p->mutable_files())[name] = content;
  return prepare;
}

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

int runScenario(const CliOptions& cli, const LocalWorkerFactory& local_worker) {
  std::shared_ptr<common::Scenario> scenario;
  std::vector<WorkerAddress> addresses;
  ClusterSecurity security;
  try {
    common::LoadOptions load_options;
    load_options.overrides = cli.overrides;
    std::map<std::string, std::string> env_file;
    if (!cli.env_file.empty()) {
      env_file = parseEnvFile(cli.env_file);
      load_options.env_overlay = &env_file;
    }
    scenario = std::make_shared<common::Scenario>(
        common::loadScenarioFile(cli.scenario_path, load_options));
    if (!cli.workers_file.empty())
      addresses = parseHostsFile(cli.workers_file);
    if (!cli.key_file.empty())
      security.secret_z85 = common::readKeyFile(cli.key_file);
    if (!cli.worker_keys_dir.empty())
      security.allowed_workers = common::readPublicKeys(cli.worker_keys_dir);
    for (const auto& address : addresses)
      if (!address.key.empty())
        security.allowed_workers.insert(address.key);
    if (!security.allowed_workers.empty() && security.secret_z85.empty())
      throw common::ConfigError(cli.worker_keys_dir.empty() ? cli.workers_file
                                                            : cli.worker_keys_dir,
                                0, 0, "", "worker keys need the master's own key: pass --key FILE");
  } catch (const common::ConfigError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  if (cli.duration)
    common::applyDuration(scenario->load, *cli.duration);
  const double total_s = seconds(scenario->load.total());
  const size_t step_count = scenario->step_table.size();
  Progress progress(cli, step_count, total_s);
  if (!cli.out_dir.empty() && !cli.dry_run) {
    std::error_code ec;
    std::filesystem::create_directories(cli.out_dir, ec);
    if (ec) {
      fmt::print(stderr, "--out {}: cannot create the directory: {}\n", cli.out_dir, ec.message());
      return 2;
    }
    if (auto error = checkWritable(cli.out_dir); !error.empty()) {
      fmt::print(stderr, "--out {}\n", error);
      return 2;
    }
  }

  std::signal(SIGINT, onInterrupt);
  std::signal(SIGTERM, onInterrupt);

  zmq::context_t context;
  // The cluster needs a handful of sockets (one ROUTER, its monitor, the embedded worker's);
  // the limit is raised so that no worker count can run into libzmq's default of 1,023.
  context.set(zmq::ctxopt::max_sockets, 65536);
  common::SteadyClock clock;
  std::unique_ptr<LocalWorker> local;
  const bool reverse = !cli.listen.empty();
  if (addresses.empty() && !reverse) {
    LocalWorkerOptions options;
    options.threads = cli.threads;
    options.heartbeat_timeout = cli.heartbeat_timeout;
    options.master_secret = security.secret_z85;
    local = local_worker(context, options);
    addresses.push_back(local->address());
  }
  std::mt19937_64 rng(std::random_device{}());
  uint64_t run_id = rng() | 1;
  Cluster cluster(context, clock, run_id, security);
  try {
    if (reverse)
      cluster.listen(cli.listen);
    else
      cluster.dial(addresses);
  } catch (const zmq::error_t& e) {
    fmt::print(stderr, "{}: {}\n", reverse ? cli.listen : std::string("--workers"), e.what());
    return 3;
  }

  // Whatever way this function returns, workers that joined but did not run are freed.
  struct Release {
    Cluster& cluster;
    ~Release() { cluster.release(); }
  } release{cluster};

  // Handshake: versions and clock offsets, every worker at once.
  cluster.handshake(reverse ? cli.connect_timeout + std::chrono::milliseconds(0)
                            : cli.connect_timeout,
                    kClockSamples, size_t(cli.expect_workers), [] { return g_interrupted != 0; });
  if (g_interrupted)
    return 130; // Release frees the workers that joined
  if (auto failure = checkHandshake(cluster, cli))
    return *failure;
  cluster.dropMonitors(); // their work is done: keep the run's poll set to one socket a worker

  // Shares in proportion to weight and threads: deterministic, shown by --dry-run.
  std::vector<WorkerLink*> joined;
  for (auto& link : cluster.links())
    if (link.state == LinkState::Joined)
      joined.push_back(&link);
  std::vector<double> capacity;
  for (auto* link : joined)
    capacity.push_back(link->address.weight * std::max(1u, link->threads));
  std::vector<WorkerPlan> plans;
  try {
    plans = planWorkers(*scenario, capacity);
  } catch (const common::ConfigError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return 2;
  }
  const auto cluster_users = clusterUsers(plans);
  for (size_t i = 0; i < joined.size(); ++i) {
    joined[i]->index = static_cast<uint32_t>(i);
    joined[i]->users = plans[i].users;
  }
  // Refused before anything is shipped (and by --dry-run): ZeroMQ drops an oversized message
  // without a word, and the worker would never answer.
  size_t largest_prepare = 0;
  for (size_t i = 0; i < plans.size(); ++i) {
    const size_t bytes = prepareFor(*scenario, cli, plans[i], cluster_users).ByteSizeLong();
    largest_prepare = std::max(largest_prepare, bytes);
    if (auto why = prepareTooLarge(bytes, *scenario, plans[i]); !why.empty()) {
      fmt::print(stderr, "{}: {}\n", workerLabel(*joined[i]), why);
      return 2;
    }
  }
  if (cli.dry_run) {
    printPlan(*scenario, cluster, plans);
    return 0;
  }

  // Prepare: ship the scenario and each share; wait for every Ready.
  for (auto* link : joined) {
    wire::Envelope welcome;
    auto* w = welcome.mutable_welcome();
    w->set_worker_index(link->index);
    w->set_worker_count(static_cast<uint32_t>(joined.size()));
    w->set_clock_offset_ns(link->clock_offset_ns);
    w->set_heartbeat_timeout_ms(static_cast<uint32_t>(cli.heartbeat_timeout.count()));
    cluster.send(*link, welcome);
    wire::Envelope prepare = prepareFor(*scenario, cli, plans[link->index], cluster_users);
    cluster.send(*link, prepare);
  }
  // The workers parse and validate what they were shipped: a large Prepare takes longer.
  const auto ready_timeout = readyTimeout(cli.connect_timeout, largest_prepare);
  const auto prepare_deadline = clock.now() + ready_timeout;
  auto pending = [&] {
    return std::count_if(joined.begin(), joined.end(),
                         [](auto* l) { return l->state == LinkState::Joined; });
  };
  while (pending() > 0 && clock.now() < prepare_deadline && !g_interrupted) {
    cluster.heartbeat({LinkState::Joined, LinkState::Ready});
    cluster.poll(20ms, [&](WorkerLink& link, const wire::Envelope& e) {
      if (e.has_ready() && link.state == LinkState::Joined)
        link.state = LinkState::Ready;
      if (e.has_refused()) {
        link.state = LinkState::Refused;
        link.why = e.refused().reason();
      }
    });
  }
  if (g_interrupted)
    return 130; // Release frees the workers that joined
  for (auto* link : joined) {
    if (link->state == LinkState::Refused) {
      fmt::print(stderr, "{}: refused the scenario: {}\n", workerLabel(*link), link->why);
      return 3;
    }
    if (link->state != LinkState::Ready) {
      fmt::print(stderr, "{}: not ready within {} ms\n", workerLabel(*link), ready_timeout.count());
      return 3;
    }
  }

  // Start barrier: one absolute time on the master's clock, far enough ahead for every
  // worker to hear it first.
  int64_t max_rtt_ns = 0;
  for (auto* link : joined)
    max_rtt_ns = std::max(max_rtt_ns, link->rtt_ns);
  const auto t0 = clock.now() + 100ms + std::chrono::nanoseconds(4 * max_rtt_ns);
  wire::Envelope start;
  start.mutable_start()->set_start_master_ns(common::steadyNs(t0));
  cluster.broadcast(start, {LinkState::Ready});
  for (auto* link : joined) {
    link->state = LinkState::Running;
    link->last_heard = clock.now();
  }
  if (!cli.quiet)
    fmt::print("stampede: \"{}\" against {}://{}:{}, {} on {} worker{}, {:.0f}s\n", scenario->name,
               scenario->target.scheme, scenario->target.host, scenario->target.port,
               scenario->load.model == common::LoadSpec::Model::Open
                   ? fmt::format("{:g}/s", scenario->load.peak())
                   : fmt::format("{} users", scenario->load.users),
               joined.size(), joined.size() == 1 ? "" : "s", total_s);

  RunResult result;
  result.scenario = scenario.get();
  result.overrides = scenario->overrides;
  if (cli.duration)
    result.overrides.push_back(fmt::format("--duration {}s", seconds(*cli.duration)));
  result.started_at =
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(t0 - clock.now());
  result.t0 = t0;
  const auto end_at = t0 + scenario->load.total();

  // A warning goes to stderr at once (a soak runs for hours) and into the report.
  auto warn = [&](std::string text) {
    fmt::print(stderr, "\nwarning: {}\n", text);
    result.warnings.push_back(std::move(text));
  };
  // Rows wait this long for a worker that went silent, so that its Stats, when they come,
  // still land in their own rows; longer than that it is lost.
  IntervalRows rows(t0, cli.heartbeat_timeout + 1s);
  Timeseries timeseries;
  bool outputs_failed = false;
  auto writeRows = [&](const std::vector<IntervalRow>& finished) {
    for (const auto& row : finished)
      if (auto error = timeseries.append(row); !error.empty() && !outputs_failed) {
        outputs_failed = true;
        warn(fmt::format("{}; timeseries.csv is incomplete from {:.0f}s on", error, row.elapsed_s));
      }
  };
  if (!cli.out_dir.empty()) {
    // The run has started: the previous run's report goes, so that the directory never holds
    // one run's timeseries.csv next to another run's report.json.
    std::error_code ec;
    std::filesystem::remove(std::filesystem::path(cli.out_dir) / "report.json", ec);
    if (auto error = timeseries.open(cli.out_dir); !error.empty()) {
      outputs_failed = true;
      warn(fmt::format("{}; timeseries.csv is incomplete", error));
    }
  }
  std::map<const WorkerLink*, LostWorker> lost_workers;
  bool stop_sent = false;
  HaltPolicy policy(scenario->halt);
  std::optional<SteadyTime> halt_sent_at;

  // Sends the halt the policy just decided to every running worker.
  auto sendHalt = [&](Decision decision, SteadyTime now) {
    if (decision != Decision::Halt)
      return;
    const HaltInfo& info = *policy.halt();
    wire::Envelope halt;
    halt.mutable_halt()->set_reason(toWire(info.reason));
    if (info.error_at)
      halt.mutable_halt()->set_first_error_master_ns(common::steadyNs(*info.error_at));
    cluster.broadcast(halt, {LinkState::Running});
    halt_sent_at = now;
  };

  ThresholdJudge judge(*scenario);
  // halt.on_error {count: N}: the sum over workers, each reporting every error at once.
  auto checkErrorCount = [&] {
    uint64_t errors = 0;
    for (auto* link : joined)
      errors += link->error_tally;
    auto now = clock.now();
    sendHalt(policy.onErrorCount(errors, seconds(now - t0)), now);
  };

  auto on_message = [&](WorkerLink& link, const wire::Envelope& e) {
    switch (e.body_case()) {
    case wire::Envelope::kError: {
      auto context = common::errorFromWire(e.error().context());
      const double at_s = seconds(context.at - t0);
      // First, before anything else queued: every worker hears Halt now.
      sendHalt(policy.onError(std::move(context), e.error().data_exhausted(), link.index, at_s),
               clock.now());
      break;
    }
    case wire::Envelope::kErrorTally:
      link.error_tally = std::max(link.error_tally, e.error_tally().errors());
      checkErrorCount();
      break;
    case wire::Envelope::kStats:
    case wire::Envelope::kFinal: {
      const auto& stats = e.has_stats() ? e.stats() : e.final().stats();
      if (link.final_received)
        break;
      if (!common::statsFromWire(stats, step_count, progress.interval())) {
        ++result.dropped_messages;
        break;
      }
      rows.add(link.index, cutTime(stats, t0, clock.now()), stats);
      for (const auto& step : stats.steps()) {
        link.requests += step.requests();
        link.errors += step.errors();
      }
      link.active_users = stats.active_users();
      link.error_tally = std::max(link.error_tally, link.errors);
      checkErrorCount();
      if (e.has_final()) {
        link.final_received = true;
        link.final_at = clock.now();
        if (e.final().has_sent_after_first_error()) {
          const auto& sent = e.final().sent_after_first_error();
          link.sent_after_first_error = sent.requests();
          link.sent_count_complete = sent.complete();
          if (sent.has_last_send_master_ns())
            link.last_send = common::fromSteadyNs(sent.last_send_master_ns());
        }
        link.state = LinkState::Done;
        if (e.final().leaving() && !stop_sent) {
          noteLeft(link, seconds(link.final_at - t0));
          sendHalt(policy.onWorkerLeft(), link.final_at);
        }
        wire::Envelope ack;
        ack.mutable_final_ack();
        cluster.send(link, ack);
      }
      break;
    }
    default:
      break;
    }
  };

  auto last_tick = t0;
  auto next_tick = t0 + 1s;
  auto running = [&] {
    return std::any_of(joined.begin(), joined.end(),
                       [](auto* l) { return l->state == LinkState::Running; });
  };
  while (running()) {
    cluster.poll(10ms, on_message);
    const auto now = clock.now();
    if (g_interrupted)
      sendHalt(policy.onInterrupted(seconds(now - t0)), now);
    if (g_interrupted > 1)
      exitNow(cluster);
    // The master ends the run; workers also stop by themselves at the same time.
    if (now >= end_at && !stop_sent) {
      wire::Envelope stop;
      stop.mutable_stop();
      cluster.broadcast(stop, {LinkState::Running});
      stop_sent = true;
    }
    for (auto* link : joined) {
      if (link->state == LinkState::Running && now - link->last_heard > cli.heartbeat_timeout) {
        link->state = LinkState::Lost;
        link->why = fmt::format("silent for {:.1f}s", seconds(now - link->last_heard));
        fmt::print(stderr, "\n{}: lost: {}\n", workerLabel(*link), link->why);
        auto& lost = lost_workers[link] =
            estimateLost(*link, rows.pace(link->index), t0, now, end_at);
        warn(describeLost(*link, lost));
        // Best effort: a worker that was only frozen stops at once when it wakes up.
        wire::Envelope halt;
        halt.mutable_halt()->set_reason(wire::HALT_REASON_LOST);
        cluster.send(*link, halt);
        sendHalt(policy.onWorkerLost(seconds(now - t0)), now);
      }
    }
    if (now >= next_tick) {
      wire::Envelope beat;
      beat.mutable_heartbeat()->set_sent_ns(common::steadyNs(now));
      cluster.broadcast(beat, {LinkState::Running});
      int users = 0;
      int alive = 0;
      for (auto* link : joined) {
        if (link->state == LinkState::Running) {
          users += link->active_users;
          ++alive;
        }
      }
      if (now >= t0) {
        judge.addInterval(progress.interval(), seconds(now - last_tick));
        if (auto breach = judge.abortBreach())
          sendHalt(
              policy.onThresholdBreach(breach->threshold->expr, breach->value, seconds(now - t0)),
              now);
        else if (auto rate = judge.errorRateBreach())
          sendHalt(policy.onErrorRate(*rate, seconds(now - t0)), now);
      }
      if (now >= t0)
        progress.tick(seconds(now - t0), seconds(now - last_tick), users, alive,
                      static_cast<int>(cluster.links().size()));
      std::vector<uint32_t> reporting;
      for (auto* link : joined)
        if (link->state == LinkState::Running)
          reporting.push_back(link->index);
      writeRows(rows.take(now, reporting));
      last_tick = std::max(now, t0);
      next_tick = now + 1s;
    }
  }
  const auto end = clock.now();
  judge.addInterval(progress.interval(), seconds(end - last_tick));
  progress.tick(seconds(end - t0), seconds(end - last_tick), 0, 0,
                static_cast<int>(cluster.links().size()));
  progress.end();
  writeRows(rows.finish());

  result.duration_s = seconds(end - t0);
  result.book = progress.book();
  result.dropped_messages += cluster.droppedMessages();
  result.first_error = policy.firstError();
  result.halt = policy.halt();
  for (const auto& link : cluster.links()) {
    WorkerResult w;
    w.id = link.index;
    w.address = link.name;
    w.state = link.state == LinkState::Lost && link.why == "unreachable"
                  ? "unreachable"
                  : linkStateName(link.state);
    w.why = link.why;
    w.requests = link.requests;
    w.errors = link.errors;
    w.users = link.users;
    w.threads = link.threads;
    w.clock_offset_ms = link.clock_offset_ns / 1e6;
    if (auto it = lost_workers.find(&link); it != lost_workers.end()) {
      w.lost_at_s = it->second.lost_at_s;
      w.last_stats_at_s = it->second.last_stats_at_s;
      w.unreported_estimate = it->second.estimate;
      w.unreported_low = it->second.low;
      w.unreported_high = it->second.high;
      result.unreported_estimate += it->second.estimate.value_or(0);
    }
    w.clock_error_ms = clockErrorMs(link);
    const auto& halt = result.halt;
    if (halt && halt->error_at && link.sent_after_first_error) {
      w.requests_sent_after_first_error = link.sent_after_first_error;
      if (link.last_send)
        w.stop_ms = millis(*link.last_send - *halt->error_at);
    }
    result.workers.push_back(w);
  }
  if (result.halt) {
    auto& halt = *result.halt;
    if (halt.error_at) {
      const WorkerLink* failing = nullptr;
      for (auto* link : joined)
        if (link->index == halt.error_worker)
          failing = link;
      for (auto* link : joined) {
        if (!link->sent_after_first_error) {
          if (link->state == LinkState::Done)
            result.warnings.push_back(
                fmt::format("worker {} sent no count of its requests after the first error: "
                            "halt.requests_sent_after_first_error leaves it out",
                            link->index));
          continue;
        }
        halt.requests_sent_after_first_error =
            halt.requests_sent_after_first_error.value_or(0) + *link->sent_after_first_error;
        // The failing worker's stamps and the error's are on one clock: no error there.
        const double error_ms =
            link == failing ? 0.0 : clockErrorMs(*link) + (failing ? clockErrorMs(*failing) : 0);
        halt.clock_error_ms = std::max(halt.clock_error_ms.value_or(0), error_ms);
        if (!link->sent_count_complete)
          result.warnings.push_back(
              fmt::format("worker {} sent more requests after the first error than its send "
                          "log holds: halt.requests_sent_after_first_error is a lower bound",
                          link->index));
      }
    }
    halt.cancelled = result.book.total().cancelled;
    // The clock starts at the failing response for an error halt, else at the decision.
    std::optional<SteadyTime> trigger;
    if (halt.reason == HaltReason::FirstError && result.first_error)
      trigger = result.first_error->at;
    else
      trigger = halt_sent_at;
    if (trigger && halt_sent_at)
      halt.halt_sent_ms = millis(*halt_sent_at - *trigger);
    bool all_acked = trigger.has_value();
    SteadyTime last_final = trigger.value_or(SteadyTime{});
    for (auto* link : joined) {
      if (link->final_received)
        last_final = std::max(last_final, link->final_at);
      else
        all_acked = false;
    }
    if (all_acked)
      halt.all_stopped_ms = millis(last_final - *trigger);
  }

  bool threshold_failed = false;
  for (const auto& verdict : judge.judgeAll()) {
    ThresholdResult t;
    t.expr = verdict.threshold->expr;
    t.window_s = double(verdict.threshold->window.count()) / 1e6;
    t.abort = verdict.threshold->abort;
    t.value = verdict.value;
    t.passed = verdict.passed;
    result.thresholds.push_back(t);
    threshold_failed = threshold_failed || !t.passed;
  }
  const auto verdict = policy.verdict(threshold_failed, outputs_failed);
  result.outcome = verdict.outcome;
  result.exit_code = verdict.exit_code;
  if (result.first_error && result.halt &&
      (result.halt->reason == HaltReason::FirstError ||
       result.halt->reason == HaltReason::ErrorCount))
    fmt::print("\n{}", formatFirstError(*result.first_error, result.t0));
  // The report first, so that the summary's last line tells what the exit code really is.
  bool report_written = false;
  if (!cli.out_dir.empty()) {
    if (auto error = writeReport(cli.out_dir, result); !error.empty()) {
      result.exit_code = HaltPolicy::afterOutputFailure(result.exit_code);
      warn(fmt::format("{}; no report", error));
    } else {
      report_written = true;
    }
  }
  std::fflush(stderr);
  fmt::print("{}", formatSummary(result));
  if (report_written)
    fmt::print("report: {}\n", (std::filesystem::path(cli.out_dir) / "report.json").string());
  std::fflush(stdout);
  return result.exit_code;
}

} // namespace stampede::master
