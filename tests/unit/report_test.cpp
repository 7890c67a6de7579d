#include "master/console.h"
#include "master/report.h"

#include <catch2/catch.hpp>

#include <chrono>

using stampede::master::HaltInfo;
using stampede::master::HaltReason;
using stampede::master::RunResult;
using stampede::master::WorkerResult;

namespace {

RunResult haltedRun(const stampede::common::Scenario& scenario, HaltReason reason) {
  RunResult r;
  r.scenario = &scenario;
  r.outcome = stampede::master::Outcome::Halted;
  HaltInfo halt;
  halt.reason = reason;
  r.halt = halt;
  return r;
}

} // namespace

TEST_CASE("report.json spells every halt reason as the README lists it", "[halt][report]") {
  stampede::common::Scenario scenario;
  const std::pair<HaltReason, const char*> reasons[] = {
      {HaltReason::FirstError, "first_error"},       {HaltReason::ErrorCount, "error_count"},
      {HaltReason::ErrorRate, "error_rate"},         {HaltReason::Threshold, "threshold"},
      {HaltReason::DataExhausted, "data_exhausted"}, {HaltReason::Interrupted, "interrupted"},
      {HaltReason::WorkerLost, "worker_lost"}};
  for (const auto& [reason, name] : reasons)
    CHECK(stampede::master::buildReport(haltedRun(scenario, reason))["halt"]["reason"] == name);
}

TEST_CASE("a halt on an error reports the sends after it, per worker and in total",
          "[halt][report]") {
  stampede::common::Scenario scenario;
  auto r = haltedRun(scenario, HaltReason::FirstError);
  r.halt->error_at = stampede::common::SteadyTime(std::chrono::seconds(100));
  r.halt->error_worker = 1;
  r.halt->requests_sent_after_first_error = 42;
  r.halt->clock_error_ms = 0.25;
  WorkerResult failing;
  failing.id = 1;
  failing.requests_sent_after_first_error = 0;
  failing.stop_ms = -0.01;
  WorkerResult other;
  other.id = 0;
  other.requests_sent_after_first_error = 42;
  other.stop_ms = 3.5;
  r.workers = {other, failing};
  const auto report = stampede::master::buildReport(r);
  CHECK(report["halt"]["requests_sent_after_first_error"] == 42);
  CHECK(report["halt"]["clock_error_ms"] == 0.25);
  CHECK(report["halt"]["first_error_monotonic_ns"] == 100'000'000'000LL);
  CHECK(report["halt"]["worker"] == 1);
  CHECK(report["workers"][0]["requests_sent_after_first_error"] == 42);
  CHECK(report["workers"][0]["stop_ms"] == 3.5);
  const auto summary = stampede::master::formatSummary(r);
  CHECK_THAT(summary, Catch::Contains("requests sent after the first error: 42 (clock error up "
                                      "to 0.250 ms), the last one 3.500 ms after it"));
}

TEST_CASE("a halt without an error to count from has null sends-after figures", "[halt][report]") {
  stampede::common::Scenario scenario;
  auto r = haltedRun(scenario, HaltReason::Interrupted);
  r.workers = {WorkerResult{}};
  const auto report = stampede::master::buildReport(r);
  CHECK(report["halt"]["requests_sent_after_first_error"].is_null());
  CHECK(report["halt"]["clock_error_ms"].is_null());
  CHECK(report["halt"]["first_error_monotonic_ns"].is_null());
  CHECK(report["halt"]["worker"].is_null());
  CHECK(report["workers"][0]["stop_ms"].is_null());
  CHECK(stampede::master::formatSummary(r).find("sent after the first error") == std::string::npos);
}

TEST_CASE("a messaging step's reconnect times are in report.json and the console summary",
          "[report][messaging]") {
  stampede::common::Scenario scenario;
  scenario.step_table = {{"SUBSCRIBE topic://t", "SUBSCRIBE"}, {"PUBLISH topic://t", "PUBLISH"}};
  RunResult r;
  r.scenario = &scenario;
  r.outcome = stampede::master::Outcome::Passed;
  r.book = stampede::common::StatsBook(2);
  r.book.steps[0].reconnect_us.record(1'250'000);
  r.book.steps[0].reconnect_us.record(40'000);
  const auto report = stampede::master::buildReport(r);
  const auto& took = report["steps"][0]["messaging"]["reconnect_ms"];
  CHECK(took["min"] == 40.0);
  CHECK(took["max"] == 1250.0);
  CHECK(report["steps"][1]["messaging"]["reconnect_ms"].is_null());
  const auto summary = stampede::master::formatSummary(r);
  CHECK_THAT(summary, Catch::Contains("reconnects of SUBSCRIBE topic://t: 2, took p50 40.0 ms, "
                                      "max 1250.0 ms"));
  CHECK(summary.find("reconnects of PUBLISH") == std::string::npos);
}
