// What a finished run produced: the input of the console summary and of report.json.
#pragma once

#include "common/error_context.h"
#include "common/scenario.h"
#include "common/stats.h"
#include "master/capacity_result.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

enum class Outcome { Passed, Halted, Failed };
const char* outcomeName(Outcome o);

// Why the master halted the run; on the wire as wire::HaltReason, in report.json as the
// string haltReasonName gives.
enum class HaltReason {
  FirstError,    // halt.on_error: first
  ErrorCount,    // halt.on_error: {count: N}
  ErrorRate,     // halt.on_error: {rate, window}
  Threshold,     // an abort: true threshold failed
  DataExhausted, // a feeder with on_exhausted: halt ran out
  Interrupted,   // Ctrl-C / SIGTERM
  WorkerLost,    // a worker was lost under on_worker_lost: halt
};
// "first_error", "error_count", "error_rate", "threshold", "data_exhausted", "interrupted",
// "worker_lost"
const char* haltReasonName(HaltReason r);

struct HaltInfo {
  HaltReason reason = HaltReason::FirstError;
  std::string threshold;          // reason threshold: the expression ...
  std::optional<double> observed; // ... and its value; error_count/error_rate: the figure
  std::string step;               // for first_error
  std::string error_kind;
  double at_s = 0; // since the start of the run
  // FirstError and DataExhausted: the error that halted the run, on the master's clock, and
  // its worker. The workers count their sends from this moment.
  std::optional<common::SteadyTime> error_at;
  uint32_t error_worker = 0;
  // Cluster-wide: requests whose send stamp is at or after error_at, each worker's stamps on
  // its own clock against error_at put on that clock with its measured offset. nullopt when
  // there is no error_at or no worker reported a count.
  std::optional<uint64_t> requests_sent_after_first_error;
  // How far a worker's stamps may sit from error_at because of the offset estimates: the
  // failing worker's error bound plus the worker's own, the largest over the counted workers.
  std::optional<double> clock_error_ms;
  std::optional<double> halt_sent_ms;   // failing response -> the master's first Halt send
  std::optional<double> all_stopped_ms; // failing response -> the last worker's Final
  uint64_t cancelled = 0;
  std::vector<common::ErrorContext> also_failed; // other workers' first errors, at most 20
};

struct ThresholdResult {
  std::string expr;
  double window_s = 0; // 0: the whole run
  bool abort = false;
  std::optional<double> value; // nullopt: no data
  bool passed = true;
};

struct WorkerResult {
  uint32_t id = 0;
  std::string address;
  std::string state; // done | left | lost | busy | refused | unreachable
  std::string why;
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint32_t users = 0;
  uint32_t threads = 0;
  double clock_offset_ms = 0;
  // Lost mid-run: when (s into the run), when its last Stats was cut, and an estimate of the
  // requests it made after that, which never reached the master and are in no count.
  std::optional<double> lost_at_s;
  std::optional<double> last_stats_at_s;
  std::optional<uint64_t> unreported_estimate; // with its range: low and high
  std::optional<uint64_t> unreported_low;
  std::optional<uint64_t> unreported_high;
  double clock_error_ms = 0; // the offset's error bound: half the round trip of its sample
  // Re-measured during the run (every heartbeat): the largest error bound of any offset the
  // worker stamped messages with, the offset at the end of the run and the drift measured.
  double run_clock_error_ms = 0;
  double clock_offset_end_ms = 0;
  double clock_drift_ppm = 0;
  // Halts with HaltInfo::error_at: its requests sent at or after that moment, and the time
  // from it to its last request's send (negative: it sent nothing after it).
  std::optional<uint64_t> requests_sent_after_first_error;
  std::optional<double> stop_ms;
  // Its own figures (master/divergence.h: log buckets, a p99 within 4.5 %), and why it is
  // divergent from the rest of the cluster ("" when it is not).
  std::optional<double> p99_ms;
  std::optional<double> schedule_lag_p99_ms;
  std::optional<double> error_rate;
  std::string divergent;
  // Each time it left the run (lost) and joined it again (on_worker_lost: rejoin): seconds
  // into the run, "lost" or "joined", and why (report.html's table shows it).
  struct Event {
    double at_s = 0;
    std::string event;
    std::string reason;
  };
  std::vector<Event> events;
};

// One row of timeseries.csv, its figures as written there (ms), plus the open model's service
// time and schedule lag: what report.html draws over time.
struct SeriesPoint {
  double elapsed_s = 0;
  double length_s = 1;
  uint32_t users = 0;
  uint64_t requests = 0;
  double rps = 0;
  uint64_t errors = 0;
  uint64_t dropped = 0;
  double p50_ms = 0, p90_ms = 0, p99_ms = 0, max_ms = 0;
  double service_p50_ms = 0, service_p99_ms = 0; // open model only (else 0)
  double lag_p99_ms = 0;                         // open model only (else 0)
};

struct RunResult {
  const common::Scenario* scenario = nullptr;
  Outcome outcome = Outcome::Passed;
  int exit_code = 0;
  std::chrono::system_clock::time_point started_at;
  common::SteadyTime t0;
  double duration_s = 0;
  common::StatsBook book;
  std::optional<common::ErrorContext> first_error;
  std::optional<HaltInfo> halt;
  std::vector<WorkerResult> workers;
  std::vector<ThresholdResult> thresholds;
  std::vector<std::string> overrides; // --set ones as applied, then --duration
  // The messaging start barrier's wait and subscriptions (RunContext), when it had one.
  std::optional<double> start_barrier_s;
  uint64_t start_barrier_subscriptions = 0;
  uint64_t dropped_messages = 0;          // control messages dropped as garbage, stale or duplicate
  std::vector<std::string> warnings;      // lost workers, outputs that could not be written...
  uint64_t unreported_estimate = 0;       // lost workers' requests never reported (an estimate)
  std::optional<CapacityResult> capacity; // a capacity run: the search and its probes
  std::vector<SeriesPoint> series;        // timeseries.csv's rows, for report.html
};

} // namespace stampede::master
