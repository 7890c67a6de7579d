#include "common/config_error.h"
#include "common/scenario.h"
#include "common/threshold.h"
#include "master/thresholds.h"

#include <catch2/catch.hpp>

using namespace stampede;
using common::Threshold;

namespace {

Threshold parse(std::string_view expr) {
  std::string error;
  size_t offset = 0;
  auto t = common::parseThreshold(expr, error, offset);
  INFO(expr << ": " << error);
  REQUIRE(t);
  return *t;
}

common::Scenario scenarioWith(const std::string& halt) {
  return common::loadScenarioText(
      "name: t\ntarget: http://127.0.0.1:1\nload: {users: 1, duration: 1s}\n"
      "halt:\n" +
          halt +
          "flows:\n  - steps:\n      - get: /a\n        name: login\n"
          "      - get: /b\n        name: browse\n",
      "t.yaml");
}

common::StatsBook secondOf(size_t steps, size_t step, uint64_t requests, uint64_t errors,
                           int64_t latency_us) {
  common::StatsBook book(steps);
  auto& s = book.steps[step];
  s.requests = requests;
  s.errors = errors;
  for (uint64_t i = 0; i < requests; ++i)
    s.latency_us.record(latency_us);
  return book;
}

} // namespace

TEST_CASE("threshold expressions parse metric, step scope, operator and unit", "[threshold]") {
  auto p99 = parse("p99 < 250ms");
  CHECK(p99.metric == Threshold::Metric::P99);
  CHECK(p99.op == Threshold::Op::Less);
  CHECK(p99.value == Approx(250.0));
  CHECK(p99.step.empty());

  auto scoped = parse("p95{step: login} <= 1.5s");
  CHECK(scoped.metric == Threshold::Metric::P95);
  CHECK(scoped.step == "login");
  CHECK(scoped.op == Threshold::Op::LessEqual);
  CHECK(scoped.value == Approx(1500.0));

  CHECK(parse("error_rate < 0.5%").value == Approx(0.005));
  CHECK(parse("rps >= 100/s").value == Approx(100.0));
  CHECK(parse("rps > 30/m").value == Approx(0.5));
  CHECK(parse("dropped < 1").metric == Threshold::Metric::Dropped);
  CHECK(parse("p999 < 1s").metric == Threshold::Metric::P999);
}

TEST_CASE("malformed threshold expressions are refused at the offending byte", "[threshold]") {
  struct Case {
    const char* expr;
    size_t offset;
  };
  for (auto c : {Case{"p98 < 1s", 0}, Case{"p99 = 1s", 4}, Case{"p99 < fast", 6},
                 Case{"error_rate < 150%", 13}, Case{"p99{stp: a} < 1s", 4}, Case{"p99 <", 5}}) {
    std::string error;
    size_t offset = 99;
    CHECK_FALSE(common::parseThreshold(c.expr, error, offset));
    CHECK(offset == c.offset);
    CHECK_FALSE(error.empty());
  }
}

TEST_CASE("a threshold naming an unknown step is a validation error with its location",
          "[threshold]") {
  try {
    scenarioWith("  thresholds:\n    - \"p99{step: logn} < 1s\"\n");
    FAIL("accepted an unknown step");
  } catch (const common::ConfigError& e) {
    CHECK(e.line() == 6);
    CHECK(e.keyPath() == "halt.thresholds[0]");
    CHECK(std::string(e.what()).find("did you mean 'login'") != std::string::npos);
  }
}

TEST_CASE("halt policies load: count, rate with window, on_worker_lost", "[threshold]") {
  auto count = scenarioWith("  on_error: {count: 5}\n  on_worker_lost: continue\n");
  CHECK(count.halt.on_error == common::HaltSpec::OnError::Count);
  CHECK(count.halt.error_count == 5);
  CHECK(count.halt.on_worker_lost == common::HaltSpec::OnWorkerLost::Continue);
  auto rate = scenarioWith("  on_error: {rate: 2%, window: 30s}\n");
  CHECK(rate.halt.on_error == common::HaltSpec::OnError::Rate);
  CHECK(rate.halt.error_rate == Approx(0.02));
  CHECK(rate.halt.error_window == std::chrono::seconds(30));
  CHECK_THROWS_AS(scenarioWith("  on_error: {rate: 2}\n"), common::ConfigError);
  CHECK_THROWS_AS(scenarioWith("  on_error: {count: 0}\n"), common::ConfigError);
  CHECK(scenarioWith("  on_worker_lost: rejoin\n").halt.on_worker_lost ==
        common::HaltSpec::OnWorkerLost::Rejoin);
}

TEST_CASE("an abort threshold is breached by the merged figures of its step only", "[threshold]") {
  auto scenario =
      scenarioWith("  thresholds:\n    - expr: \"p99{step: login} < 10ms\"\n      abort: true\n");
  master::ThresholdJudge judge(scenario);
  judge.addInterval(secondOf(2, 1, 100, 0, 50'000), 1.0); // browse is slow: not in scope
  CHECK_FALSE(judge.abortBreach());
  judge.addInterval(secondOf(2, 0, 100, 0, 2'000), 1.0);
  CHECK_FALSE(judge.abortBreach());
  judge.addInterval(secondOf(2, 0, 100, 0, 40'000), 1.0); // login p99 now 40 ms
  auto breach = judge.abortBreach();
  REQUIRE(breach);
  CHECK(*breach->value == Approx(40.0).epsilon(0.002));
}

TEST_CASE("a windowed threshold forgets seconds older than its window", "[threshold]") {
  auto scenario = scenarioWith("  thresholds:\n    - expr: error_rate < 10%\n      window: 2s\n");
  master::ThresholdJudge judge(scenario);
  judge.addInterval(secondOf(2, 0, 10, 10, 1000), 1.0); // 100 % errors
  CHECK_FALSE(judge.judgeAll()[0].passed);
  judge.addInterval(secondOf(2, 0, 10, 0, 1000), 1.0);
  judge.addInterval(secondOf(2, 0, 10, 0, 1000), 1.0);
  auto verdicts = judge.judgeAll();
  REQUIRE(verdicts.size() == 1);
  CHECK(verdicts[0].passed);
  CHECK(*verdicts[0].value == Approx(0.0));
}

TEST_CASE("the error-rate policy halts once errors reach the rate over its window", "[threshold]") {
  auto scenario = scenarioWith("  on_error: {rate: 5%, window: 10s}\n");
  master::ThresholdJudge judge(scenario);
  judge.addInterval(secondOf(2, 0, 100, 4, 1000), 1.0);
  CHECK_FALSE(judge.errorRateBreach());
  judge.addInterval(secondOf(2, 1, 100, 7, 1000), 1.0); // 11 of 200 = 5.5 %
  auto rate = judge.errorRateBreach();
  REQUIRE(rate);
  CHECK(*rate == Approx(0.055));
}
