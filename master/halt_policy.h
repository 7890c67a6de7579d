// The master's halt decisions in one place: given the run's events (a worker's error, the
// cluster's error count, a threshold or error-rate breach, a worker lost or left, an
// interrupt) it decides whether the run halts now or goes on, keeps the first error and the
// halt, and at the end gives the outcome and the process exit code. No sockets: the run loop
// sends the Halt it decides. Control thread only.
#pragma once

#include "common/error_context.h"
#include "common/scenario.h"
#include "master/run_result.h"

#include <cstdint>
#include <optional>
#include <string>

namespace stampede::master {

// The process exit codes.
constexpr int kExitPassed = 0;
constexpr int kExitFailed = 1;         // halted by the scenario's rules, or a threshold failed
constexpr int kExitInvalid = 2;        // bad arguments, scenario or plan
constexpr int kExitInfrastructure = 3; // workers busy, refused, lost; outputs not written
constexpr int kExitInterrupted = 130;  // Ctrl-C or SIGTERM

// Other workers' first errors listed under halt.also_failed, at most.
constexpr size_t kAlsoFailedListed = 20;

// Halt: this event halts the run now, and the caller sends Halt to every running worker (once:
// a run halts at most once). Continue: it does not, or the run has halted already.
enum class Decision { Continue, Halt };

// The exit code a halt for `reason` gives.
int haltExitCode(HaltReason reason);

class HaltPolicy {
public:
  explicit HaltPolicy(const common::HaltSpec& spec);

  // An error a worker reported, `at_s` into the run (when its response completed). A feeder
  // with on_exhausted: halt that ran out halts whatever halt.on_error says; otherwise the first
  // error halts under on_error: first. Later errors after a halt are kept as also_failed.
  [[nodiscard]] Decision onError(common::ErrorContext error, bool data_exhausted, uint32_t worker,
                                 double at_s);
  // The cluster's error count so far: halts under on_error {count: N} once it reaches N.
  [[nodiscard]] Decision onErrorCount(uint64_t errors, double at_s);
  // An `abort: true` threshold breached over its window, with its value.
  [[nodiscard]] Decision onThresholdBreach(std::string expr, std::optional<double> value,
                                           double at_s);
  // on_error {rate, window} reached: the observed rate.
  [[nodiscard]] Decision onErrorRate(double rate, double at_s);
  // A worker went silent past --heartbeat-timeout: halts under on_worker_lost: halt; under
  // continue and rejoin the run goes on, exits 0, and the report tells (under rejoin,
  // master/rejoin.h may bring the worker back).
  [[nodiscard]] Decision onWorkerLost(double at_s);
  // A worker stopped by its operator, its figures complete: never halts the run.
  [[nodiscard]] Decision onWorkerLeft();
  // Ctrl-C or SIGTERM.
  [[nodiscard]] Decision onInterrupted(double at_s);

  const std::optional<HaltInfo>& halt() const { return halt_; }
  const std::optional<common::ErrorContext>& firstError() const { return first_error_; }

  struct Verdict {
    Outcome outcome = Outcome::Passed;
    int exit_code = kExitPassed;
  };
  // Once the run has ended: halted (the halt's exit code), else failed when a threshold
  // failed, else passed; outputs that could not be written make a run that passed an
  // infrastructure failure.
  Verdict verdict(bool threshold_failed, bool outputs_failed) const;
  // The exit code once an output (the report) could not be written after `exit_code` was given.
  static int afterOutputFailure(int exit_code);

private:
  Decision halt(HaltInfo info);

  common::HaltSpec::OnError on_error_;
  uint64_t error_count_;
  common::HaltSpec::OnWorkerLost on_worker_lost_;
  std::optional<common::ErrorContext> first_error_;
  std::optional<HaltInfo> halt_;
};

} // namespace stampede::master
