// What a finished run produced: the input of the console summary and of report.json.
#pragma once

#include "common/error_context.h"
#include "common/scenario.h"
#include "common/stats.h"

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

enum class Outcome { Passed, Halted, Failed };
const char* outcomeName(Outcome o);

struct HaltInfo {
  // "first_error", "error_count", "error_rate", "threshold", "interrupted", "worker_lost"
  std::string reason;
  std::string threshold;          // reason threshold: the expression ...
  std::optional<double> observed; // ... and its value; error_count/error_rate: the figure
  std::string step;               // for first_error
  std::string error_kind;
  double at_s = 0; // since the start of the run
  uint64_t requests_started_after_halt = 0;
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
  uint64_t dropped_messages = 0;      // control messages dropped as garbage, stale or duplicate
};

} // namespace stampede::master
