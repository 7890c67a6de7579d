#include "master/run.h"

#include "common/config_error.h"
#include "common/keys.h"
#include "common/load_plan.h"
#include "common/scenario.h"
#include "master/capacity_probes.h"
#include "master/cluster.h"
#include "master/env_file.h"
#include "master/halt_policy.h"
#include "master/hosts_file.h"
#include "master/interrupt.h"
#include "master/metrics_publish.h"
#include "master/run_context.h"
#include "master/run_finish.h"
#include "master/run_loop.h"
#include "master/run_setup.h"
#include "master/start_barrier.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <random>
#include <unistd.h>

namespace stampede::master {
namespace {

// The cluster needs a handful of sockets (one ROUTER, its monitor, the embedded worker's);
// the limit is raised so that no worker count can run into libzmq's default of 1,023.
constexpr int kMaxZmqSockets = 65536;

// What the plan phase reads: the scenario with its overrides, the workers to dial, the keys.
struct Inputs {
  std::shared_ptr<common::Scenario> scenario;
  std::vector<WorkerAddress> addresses;
  ClusterSecurity security;
};

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

// The plan phase: loads and validates the scenario, the hosts file and the keys, applies
// --duration, and checks --out. An exit code when the run cannot go on.
std::optional<int> loadInputs(const CliOptions& cli, Inputs& in) {
  auto& security = in.security;
  try {
    common::LoadOptions load_options;
    load_options.overrides = cli.overrides;
    load_options.find_capacity = cli.find_capacity;
    std::map<std::string, std::string> env_file;
    if (!cli.env_file.empty()) {
      env_file = parseEnvFile(cli.env_file);
      load_options.env_overlay = &env_file;
    }
    in.scenario = std::make_shared<common::Scenario>(
        common::loadScenarioFile(cli.scenario_path, load_options));
    if (!cli.workers_file.empty())
      in.addresses = parseHostsFile(cli.workers_file);
    if (!cli.key_file.empty())
      security.secret_z85 = common::readKeyFile(cli.key_file);
    if (!cli.worker_keys_dir.empty())
      security.allowed_workers = common::readPublicKeys(cli.worker_keys_dir);
    for (const auto& address : in.addresses)
      if (!address.key.empty())
        security.allowed_workers.insert(address.key);
    if (!security.allowed_workers.empty() && security.secret_z85.empty())
      throw common::ConfigError(cli.worker_keys_dir.empty() ? cli.workers_file
                                                            : cli.worker_keys_dir,
                                0, 0, "", "worker keys need the master's own key: pass --key FILE");
  } catch (const common::ConfigError& e) {
    fmt::print(stderr, "{}\n", e.what());
    return kExitInvalid;
  }
  if (cli.duration && in.scenario->capacity) {
    fmt::print(stderr, "--duration: a capacity run sets its own length (capacity.probe for each "
                       "probe); drop --duration\n");
    return kExitInvalid;
  }
  if (cli.duration)
    common::applyDuration(*in.scenario, *cli.duration);
  if (!cli.out_dir.empty() && !cli.dry_run) {
    std::error_code ec;
    std::filesystem::create_directories(cli.out_dir, ec);
    if (ec) {
      fmt::print(stderr, "--out {}: cannot create the directory: {}\n", cli.out_dir, ec.message());
      return kExitInvalid;
    }
    if (auto error = checkWritable(cli.out_dir); !error.empty()) {
      fmt::print(stderr, "--out {}\n", error);
      return kExitInvalid;
    }
  }
  return std::nullopt;
}

// The run's inputs as the report gives them, and its start on the wall clock.
RunResult startResult(const RunContext& run) {
  RunResult result;
  result.scenario = &run.scenario;
  result.overrides = run.scenario.overrides;
  if (run.cli.duration)
    result.overrides.push_back(fmt::format("--duration {}s", seconds(*run.cli.duration)));
  result.started_at =
      std::chrono::system_clock::now() +
      std::chrono::duration_cast<std::chrono::system_clock::duration>(run.t0 - run.clock.now());
  result.t0 = run.t0;
  result.start_barrier_s = run.start_barrier_s;
  result.start_barrier_subscriptions = run.start_barrier_subscriptions;
  return result;
}

} // namespace

int runScenario(const CliOptions& cli, const LocalWorkerFactory& local_worker) {
  Inputs in;
  if (auto exit_code = loadInputs(cli, in))
    return *exit_code;

  catchInterrupts();
  std::optional<int> metrics_failed;
  auto metrics = startMetrics(cli, metrics_failed);
  if (metrics_failed)
    return *metrics_failed;
  zmq::context_t context;
  context.set(zmq::ctxopt::max_sockets, kMaxZmqSockets);
  common::SteadyClock clock;
  std::unique_ptr<LocalWorker> local;
  const bool reverse = !cli.listen.empty();
  if (in.addresses.empty() && !reverse) {
    LocalWorkerOptions options;
    options.threads = cli.threads;
    options.heartbeat_timeout = cli.heartbeat_timeout;
    options.master_secret = in.security.secret_z85;
    local = local_worker(context, options);
    in.addresses.push_back(local->address());
  }
  std::mt19937_64 rng(std::random_device{}());
  uint64_t run_id = rng() | 1;
  Cluster cluster(context, clock, run_id, in.security);
  try {
    if (reverse)
      cluster.listen(cli.listen);
    else
      cluster.dial(in.addresses);
  } catch (const zmq::error_t& e) {
    fmt::print(stderr, "{}: {}\n", reverse ? cli.listen : std::string("--workers"), e.what());
    return kExitInfrastructure;
  }
  // Whatever way this function returns, workers that joined but did not run are freed.
  struct Release {
    Cluster& cluster;
    ~Release() { cluster.release(); }
  } release{cluster};

  RunContext run{.cli = cli, .scenario = *in.scenario, .cluster = cluster, .clock = clock};
  run.metrics = metrics.get();
  if (auto exit_code = handshake(run))
    return *exit_code;
  if (auto exit_code = shareOut(run))
    return *exit_code;
  if (auto exit_code = prepare(run))
    return *exit_code;
  if (auto exit_code = startBarrier(run))
    return *exit_code;
  start(run);
  std::optional<CapacityProbes> capacity;
  if (run.scenario.capacity) {
    capacity.emplace(run);
    run.capacity = &*capacity;
    capacity->begin();
  }

  RunResult result = startResult(run);
  RunLoop loop(run, result);
  loop.run();
  const auto ended_at = loop.end();
  collectResult(run, loop, ended_at, result);
  const int exit_code = reportResult(cli, result);
  publishFinalMetrics(run, result);
  return exit_code;
}

} // namespace stampede::master
