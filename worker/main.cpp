#include "worker/daemon.h"
#include "worker/listen_policy.h"

#include "common/config_error.h"
#include "common/keygen_command.h"
#include "common/keys.h"
#include "common/process_limits.h"
#include "common/units.h"
#include "worker/target_policy.h"

#include <boost/program_options.hpp>
#include <fmt/core.h>

#include <csignal>
#include <iostream>
#include <string_view>

namespace {

std::atomic<bool> g_stop{false};
extern "C" void onSignal(int) {
  g_stop = true;
}

} // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  using namespace stampede;
  stampede::common::raiseFileLimit();
  if (argc > 1 && std::string_view(argv[1]) == "keygen")
    return common::runKeygen("worker", "worker", argc - 2, argv + 2);
  po::options_description options("Options");
  options.add_options()                                                                        //
      ("help,h", "show this help and exit")                                                    //
      ("version", "show the version and exit")                                                 //
      ("listen", po::value<std::string>(), "bind here and serve masters (tcp://0.0.0.0:7700)") //
      ("master", po::value<std::string>(), "dial this master instead (tcp://host:7701)")       //
      ("threads", po::value<int>(), "load threads (default: one per core)")                    //
      ("heartbeat-timeout", po::value<std::string>(),
       "master silent this long: stop (default 3s); once welcomed, the master's applies") //
      ("master-key", po::value<std::string>(),
       "serve only the master holding this public key's secret (master.pub)")                   //
      ("key", po::value<std::string>(), "this worker's secret key file (from `worker keygen`)") //
      ("allow-target", po::value<std::string>(),
       "CIDRs and host names this worker may load, comma-separated")         //
      ("insecure", "allow listening on a non-loopback address without keys") //
      ("test-clock-skew", po::value<int>(),
       "testing only: run this daemon's clock this many ms off (as another host's)") //
      ("test-clock-drift", po::value<int>(),
       "testing only: and let it drift this many parts per million (negative: slow)") //
      ("quiet,q", "log nothing but errors");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, options), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    fmt::print(stderr, "worker: {} (see worker --help)\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout
        << "usage: worker (--listen ENDPOINT | --master ENDPOINT) [--threads N]\n"
           "              [--master-key master.pub [--key worker.key]] [--allow-target CIDR,...]\n"
           "       worker keygen --out DIR [--name NAME] [--force]\n\n"
        << options;
    return 0;
  }
  if (vm.count("version")) {
    fmt::print("stampede worker {}\n", STAMPEDE_VERSION);
    return 0;
  }
  worker::DaemonOptions daemon;
  if (vm.count("listen"))
    daemon.listen = vm["listen"].as<std::string>();
  if (vm.count("master"))
    daemon.master = vm["master"].as<std::string>();
  if (daemon.listen.empty() == daemon.master.empty()) {
    fmt::print(stderr, "worker: give exactly one of --listen ENDPOINT or --master ENDPOINT\n");
    return 2;
  }
  if (vm.count("threads")) {
    daemon.threads = vm["threads"].as<int>();
    if (daemon.threads < 1 || daemon.threads > 1024) {
      fmt::print(stderr, "worker: --threads: expected 1..1024, got {}\n", daemon.threads);
      return 2;
    }
  }
  if (vm.count("heartbeat-timeout")) {
    auto d = common::parseDuration(vm["heartbeat-timeout"].as<std::string>());
    if (!d || d->count() <= 0) {
      fmt::print(stderr, "worker: --heartbeat-timeout: expected a duration such as 3s\n");
      return 2;
    }
    daemon.heartbeat_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  daemon.quiet = vm.count("quiet") > 0;
  if (vm.count("test-clock-skew"))
    daemon.test_clock_skew = std::chrono::milliseconds(vm["test-clock-skew"].as<int>());
  if (vm.count("test-clock-drift")) {
    const int ppm = vm["test-clock-drift"].as<int>();
    if (ppm <= -1'000'000 || ppm >= 1'000'000) {
      fmt::print(stderr, "worker: --test-clock-drift: {} ppm is out of range (-999999..999999)\n",
                 ppm);
      return 2;
    }
    daemon.test_clock_drift_ppm = ppm;
  }
  try {
    if (vm.count("master-key"))
      daemon.master_public_key = common::readKeyFile(vm["master-key"].as<std::string>());
    if (vm.count("key")) {
      if (!vm.count("master-key")) {
        fmt::print(stderr, "worker: --key needs --master-key (the master this worker serves)\n");
        return 2;
      }
      daemon.secret_key = common::readKeyFile(vm["key"].as<std::string>());
    }
  } catch (const common::ConfigError& e) {
    fmt::print(stderr, "worker: {}\n", e.what());
    return 2;
  }
  if (vm.count("allow-target")) {
    daemon.allow_target = vm["allow-target"].as<std::string>();
    try {
      worker::TargetPolicy::parse(daemon.allow_target);
    } catch (const std::invalid_argument& e) {
      fmt::print(stderr, "worker: --allow-target: {}\n", e.what());
      return 2;
    }
  }
  if (!daemon.listen.empty() && daemon.master_public_key.empty() && !vm.count("insecure") &&
      !worker::isLoopbackEndpoint(daemon.listen)) {
    fmt::print(stderr,
               "worker: refusing to listen on {} without keys: make them with `master keygen "
               "--out DIR`, then pass --master-key DIR/master.pub (or --insecure)\n",
               daemon.listen);
    return 2;
  }

  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);
  zmq::context_t context;
  worker::WorkerDaemon worker(context, daemon);
  try {
    worker.open();
  } catch (const zmq::error_t& e) {
    fmt::print(stderr, "worker: {}: {}\n", daemon.listen.empty() ? daemon.master : daemon.listen,
               e.what());
    return 3;
  }
  worker.run(g_stop);
  return 0;
}
