#include "master/cli.h"

#include "common/units.h"

#include <boost/program_options.hpp>
#include <fmt/format.h>

namespace stampede::master {
namespace po = boost::program_options;

namespace {

po::options_description describeOptions() {
  po::options_description options("Options");
  options.add_options()                                                     //
      ("help,h", "show this help and exit")                                 //
      ("version", "show the version and exit")                              //
      ("threads", po::value<int>(), "load threads (default: one per core)") //
      ("duration", po::value<std::string>(),
       "override load.duration, e.g. 30s (with load.stages: end the run after D)") //
      ("set", po::value<std::vector<std::string>>()->composing(),
       "override a scenario value: --set load.users=50 (repeatable)") //
      ("env-file", po::value<std::string>(),
       "NAME=VALUE lines that env() reads before the environment") //
      ("out", po::value<std::string>(),
       "write report.json, junit.xml, report.html and timeseries.csv into DIR")                   //
      ("quiet,q", "no live line; summary only")                                                   //
      ("workers", po::value<std::string>(), "hosts file: run on the worker daemons listed there") //
      ("listen", po::value<std::string>(),
       "reverse mode: bind here, workers dial in (tcp://0.0.0.0:7701)")                          //
      ("expect-workers", po::value<int>(), "with --listen: start once this many workers joined") //
      ("max-workers", po::value<int>(),
       "with --listen: admit workers that dial in mid-run until N run at once, re-planning "
       "every share so that the total stays the scenario's (default: --expect-workers)")       //
      ("min-workers", po::value<int>(), "start with at least N workers if some do not answer") //
      ("connect-timeout", po::value<std::string>(), "handshake deadline (default 5s)")         //
      ("heartbeat-timeout", po::value<std::string>(),
       "a silent worker is lost after this (default 3s)")                                       //
      ("key", po::value<std::string>(), "the master's secret key file (from `master keygen`)")  //
      ("worker-keys", po::value<std::string>(), "accept only workers whose NAME.pub is in DIR") //
      ("metrics-listen", po::value<std::string>(),
       "serve Prometheus metrics at http://HOST:PORT/metrics during the run") //
      ("metrics-grace", po::value<std::string>(),
       "keep the final metrics up this long after the run (default 15s; 0s: not at all)") //
      ("find-capacity",
       "search for the highest rate within the SLO: the scenario's capacity: section, or the "
       "default search in place of load:") //
      ("dry-run", "validate, handshake, print the plan and each worker's share; start nothing");
  return options;
}

} // namespace

std::string usageText() {
  std::ostringstream out;
  out << "usage: master [--workers HOSTS |\n"
         "               --listen ENDPOINT --expect-workers N [--max-workers M]] [--threads N]\n"
         "              [--duration D] [--set KEY=VALUE]... [--env-file FILE] [--out DIR]\n"
         "              [--metrics-listen HOST:PORT [--metrics-grace D]]\n"
         "              [--quiet] [--dry-run] [--find-capacity] SCENARIO.yaml\n\n"
      << describeOptions()
      << "\nExit codes: 0 passed, 1 halted or a threshold failed, 2 usage or invalid scenario,\n"
         "3 infrastructure, 130 interrupted. A capacity run: 0 capacity found, 1 even the start\n"
         "fails the SLO, 3 limited by the load generators.\n";
  return out.str();
}

CliOptions parseCli(int argc, const char* const* argv) {
  auto options = describeOptions();
  po::options_description hidden;
  hidden.add_options()("scenario", po::value<std::vector<std::string>>()) //
      ("render-html", po::value<std::vector<std::string>>()->multitoken(),
       "IN OUT: write OUT, the report.html of IN (a report.json)");
  po::options_description all;
  all.add(options).add(hidden);
  po::positional_options_description positional;
  positional.add("scenario", -1);

  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(e.what());
  }

  CliOptions cli;
  cli.help = vm.count("help") > 0;
  cli.version = vm.count("version") > 0;
  if (cli.help || cli.version)
    return cli;
  if (vm.count("render-html")) {
    const auto& paths = vm["render-html"].as<std::vector<std::string>>();
    if (paths.size() != 2)
      throw UsageError("--render-html: expected REPORT.json OUT.html");
    cli.render_html_in = paths[0];
    cli.render_html_out = paths[1];
    return cli;
  }
  cli.quiet = vm.count("quiet") > 0;
  if (vm.count("threads")) {
    cli.threads = vm["threads"].as<int>();
    if (cli.threads < 1 || cli.threads > 1024)
      throw UsageError(fmt::format("--threads: expected 1..1024, got {}", cli.threads));
  }
  if (vm.count("duration")) {
    const auto& text = vm["duration"].as<std::string>();
    cli.duration = common::parseDuration(text);
    if (!cli.duration || cli.duration->count() <= 0)
      throw UsageError(
          fmt::format("--duration: expected a duration such as 30s or 5m, got \"{}\"", text));
  }
  if (vm.count("set")) {
    for (const auto& entry : vm["set"].as<std::vector<std::string>>()) {
      if (entry.find('=') == std::string::npos || entry.front() == '=')
        throw UsageError(
            fmt::format("--set {}: expected KEY.PATH=VALUE, e.g. load.users=50", entry));
      cli.overrides.push_back(entry);
    }
  }
  if (vm.count("env-file"))
    cli.env_file = vm["env-file"].as<std::string>();
  auto positiveDuration = [&](const char* name, std::chrono::milliseconds& into) {
    if (!vm.count(name))
      return;
    const auto& text = vm[name].as<std::string>();
    auto d = common::parseDuration(text);
    if (!d || d->count() <= 0)
      throw UsageError(fmt::format("--{}: expected a duration such as 5s, got \"{}\"", name, text));
    into = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  };
  positiveDuration("connect-timeout", cli.connect_timeout);
  positiveDuration("heartbeat-timeout", cli.heartbeat_timeout);
  if (vm.count("metrics-listen")) {
    cli.metrics_listen = vm["metrics-listen"].as<std::string>();
    if (cli.metrics_listen.rfind(':') == std::string::npos)
      throw UsageError(fmt::format("--metrics-listen: expected HOST:PORT, e.g. 127.0.0.1:9464, "
                                   "got \"{}\"",
                                   cli.metrics_listen));
  }
  if (vm.count("metrics-grace")) {
    const auto& text = vm["metrics-grace"].as<std::string>();
    auto d = common::parseDuration(text);
    if (!d || d->count() < 0)
      throw UsageError(
          fmt::format("--metrics-grace: expected a duration such as 15s or 0s, got \"{}\"", text));
    if (cli.metrics_listen.empty())
      throw UsageError("--metrics-grace needs --metrics-listen");
    cli.metrics_grace = std::chrono::duration_cast<std::chrono::milliseconds>(*d);
  }
  cli.dry_run = vm.count("dry-run") > 0;
  cli.find_capacity = vm.count("find-capacity") > 0;
  if (vm.count("workers"))
    cli.workers_file = vm["workers"].as<std::string>();
  if (vm.count("listen"))
    cli.listen = vm["listen"].as<std::string>();
  if (!cli.workers_file.empty() && !cli.listen.empty())
    throw UsageError("--workers and --listen exclude each other");
  if (vm.count("expect-workers")) {
    cli.expect_workers = vm["expect-workers"].as<int>();
    if (cli.listen.empty())
      throw UsageError("--expect-workers needs --listen");
    if (cli.expect_workers < 1)
      throw UsageError("--expect-workers: expected at least 1");
  } else if (!cli.listen.empty()) {
    throw UsageError("--listen needs --expect-workers N");
  }
  if (vm.count("max-workers")) {
    cli.max_workers = vm["max-workers"].as<int>();
    if (cli.listen.empty())
      throw UsageError("--max-workers needs --listen");
    if (cli.max_workers < cli.expect_workers)
      throw UsageError(fmt::format("--max-workers: expected at least --expect-workers ({}), got {}",
                                   cli.expect_workers, cli.max_workers));
  }
  cli.max_workers = std::max(cli.max_workers, cli.expect_workers);
  if (vm.count("min-workers")) {
    cli.min_workers = vm["min-workers"].as<int>();
    if (cli.min_workers < 1)
      throw UsageError("--min-workers: expected at least 1");
  }
  if (vm.count("key"))
    cli.key_file = vm["key"].as<std::string>();
  if (vm.count("worker-keys"))
    cli.worker_keys_dir = vm["worker-keys"].as<std::string>();
  if (vm.count("out"))
    cli.out_dir = vm["out"].as<std::string>();
  if (!vm.count("scenario"))
    throw UsageError("missing SCENARIO.yaml");
  const auto& files = vm["scenario"].as<std::vector<std::string>>();
  if (files.size() != 1)
    throw UsageError(fmt::format("expected one scenario file, got {}", files.size()));
  cli.scenario_path = files[0];
  return cli;
}

} // namespace stampede::master
