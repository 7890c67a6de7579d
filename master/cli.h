// Command-line options of `master`. Parsing only; main() hands the result to the run.
#pragma once

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace stampede::master {

struct CliOptions {
  std::string scenario_path;
  int threads = 0;                                   // 0: one per core
  std::optional<std::chrono::microseconds> duration; // overrides load.duration
  std::vector<std::string> overrides;                // --set key.path=value, in order
  std::string env_file; // --env-file: NAME=VALUE lines that env() reads first
  std::string out_dir;  // "" : no files written
  bool quiet = false;
  bool dry_run = false;
  bool find_capacity = false; // --find-capacity: LoadOptions::find_capacity
  std::string workers_file;   // --workers: dial the workers listed there
  std::string listen;         // --listen: reverse mode, workers dial in
  int expect_workers = 0;     // with --listen: how many to wait for
  // With --listen: at most this many run at once; more dialling in mid-run are admitted up to
  // it, the shares re-planned (0: --expect-workers).
  int max_workers = 0;
  int min_workers = 0;         // 0: all of them
  std::string key_file;        // --key: the master's secret key (CURVE)
  std::string worker_keys_dir; // --worker-keys: accept only workers whose *.pub is here
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::string metrics_listen;                     // --metrics-listen HOST:PORT: serve /metrics
  std::chrono::milliseconds metrics_grace{15000}; // final figures kept up this long after the end
  // --render-html IN OUT (hidden): write the report.html of a report.json, and nothing else.
  std::string render_html_in;
  std::string render_html_out;
  bool help = false;
  bool version = false;
};

// Thrown for unusable arguments: main() prints what() on one line and exits 2.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

CliOptions parseCli(int argc, const char* const* argv);
std::string usageText();

} // namespace stampede::master
