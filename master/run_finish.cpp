#include "master/run_finish.h"

#include "master/capacity_probes.h"
#include "master/console.h"
#include "master/divergence.h"
#include "master/halt_policy.h"
#include "master/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

namespace stampede::master {

using common::SteadyTime;

namespace {

// One row per worker: its state, figures, clock error, and what a lost one did unreported.
void addWorkers(const RunContext& run, const std::map<const WorkerLink*, LostWorker>& lost_workers,
                RunResult& result) {
  for (const auto& link : run.cluster.links()) {
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
    w.run_clock_error_ms = double(link.run_clock_error_ns) / 1e6;
    w.clock_offset_end_ms =
        double(link.clock_model.offsetAt(common::steadyNs(run.clock.now()))) / 1e6;
    w.clock_drift_ppm = link.clock_model.drift * 1e6;
    for (const auto& event : link.events)
      w.events.push_back({event.at_s, event.what, event.reason});
    const auto& halt = result.halt;
    if (halt && halt->error_at && link.sent_after_first_error) {
      w.requests_sent_after_first_error = link.sent_after_first_error;
      if (link.last_send)
        w.stop_ms = millis(*link.last_send - *halt->error_at);
    }
    result.workers.push_back(w);
  }
}

// The halt's figures: requests sent after the first error, the clock error on that count,
// cancelled requests, and how long the halt took to be sent and to stop every worker.
void addHaltFigures(const RunContext& run, std::optional<SteadyTime> halt_sent_at,
                    RunResult& result) {
  auto& halt = *result.halt;
  if (halt.error_at) {
    const WorkerLink* failing = nullptr;
    for (auto* link : run.joined)
      if (link->index == halt.error_worker)
        failing = link;
    for (auto* link : run.joined) {
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
  for (auto* link : run.joined) {
    if (link->final_received)
      last_final = std::max(last_final, link->final_at);
    else
      all_acked = false;
  }
  if (all_acked)
    halt.all_stopped_ms = millis(last_final - *trigger);
}

// Every threshold's verdict; whether any failed.
bool addThresholds(const ThresholdJudge& judge, RunResult& result) {
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
  return threshold_failed;
}

} // namespace

void collectResult(const RunContext& run, RunLoop& loop, SteadyTime ended_at, RunResult& result) {
  const HaltPolicy& policy = loop.policy();
  result.duration_s = seconds(ended_at - run.t0);
  result.book = loop.book();
  addQueueFigures(loop.queueFigures(), result.book);
  result.dropped_messages += run.cluster.droppedMessages();
  result.first_error = policy.firstError();
  // Messages lost on a queue, found at the end: the run failed, with that as its first error
  // unless one came earlier.
  if (!result.first_error && loop.queueLoss())
    result.first_error = loop.queueLoss();
  result.halt = policy.halt();
  addWorkers(run, loop.lostWorkers(), result);
  addDivergence(loop.progress().divergence(), result.workers);
  if (result.halt)
    addHaltFigures(run, loop.haltSentAt(), result);
  const bool threshold_failed = addThresholds(loop.judge(), result);
  const auto verdict =
      policy.verdict(threshold_failed || loop.queueLoss().has_value(), loop.outputsFailed());
  result.outcome = verdict.outcome;
  result.exit_code = verdict.exit_code;
  if (run.capacity) {
    // A search that ended says the exit code (0 found, 1 start fails, 3 the generators); a
    // halt (an error marked fatal, an interrupt, a lost worker) keeps its own.
    result.capacity = run.capacity->result(result.halt.has_value());
    if (result.capacity->limited_by && !result.halt) {
      result.exit_code = result.capacity->exit_code;
      result.outcome = result.exit_code == kExitPassed ? Outcome::Passed : Outcome::Failed;
      if (loop.outputsFailed())
        result.exit_code = HaltPolicy::afterOutputFailure(result.exit_code);
    }
  }
}

int reportResult(const CliOptions& cli, RunResult& result) {
  if (result.first_error && result.halt &&
      (result.halt->reason == HaltReason::FirstError ||
       result.halt->reason == HaltReason::ErrorCount))
    fmt::print("\n{}", formatFirstError(*result.first_error, result.t0));
  // The report first, so that the summary's last line tells what the exit code really is.
  ReportsWritten reports;
  if (!cli.out_dir.empty()) {
    reports = writeReports(cli.out_dir, result);
    // A warning goes to stderr at once and into the summary (writeReports added it).
    for (const auto& warning : reports.warnings)
      fmt::print(stderr, "\nwarning: {}\n", warning);
  }
  std::fflush(stderr);
  fmt::print("{}", formatSummary(result));
  for (const auto& path : reports.written)
    fmt::print("report: {}\n", path);
  std::fflush(stdout);
  return result.exit_code;
}

} // namespace stampede::master
