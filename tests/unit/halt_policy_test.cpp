#include "master/halt_policy.h"

#include <catch2/catch.hpp>

using namespace stampede;
using master::Decision;
using master::HaltPolicy;
using master::HaltReason;
using master::Outcome;
using OnError = common::HaltSpec::OnError;
using OnWorkerLost = common::HaltSpec::OnWorkerLost;

namespace {

common::HaltSpec spec(OnError on_error, OnWorkerLost on_lost = OnWorkerLost::Halt) {
  common::HaltSpec s;
  s.on_error = on_error;
  s.on_worker_lost = on_lost;
  return s;
}

common::ErrorContext error(std::string step, std::string kind, int ms) {
  common::ErrorContext e;
  e.step = std::move(step);
  e.error_kind = std::move(kind);
  e.at = common::SteadyTime{} + std::chrono::milliseconds(ms);
  return e;
}

} // namespace

TEST_CASE("a run that nothing halted passes with exit 0", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First));
  CHECK_FALSE(policy.halt());
  auto v = policy.verdict(false, false);
  CHECK(v.outcome == Outcome::Passed);
  CHECK(v.exit_code == 0);
}

TEST_CASE("on_error first: the first error halts with its step, kind, time and worker",
          "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First));
  CHECK(policy.onError(error("login", "status", 1500), false, 2, 1.5) == Decision::Halt);
  REQUIRE(policy.halt());
  CHECK(policy.halt()->reason == HaltReason::FirstError);
  CHECK(policy.halt()->step == "login");
  CHECK(policy.halt()->error_kind == "status");
  CHECK(policy.halt()->at_s == 1.5);
  CHECK(policy.halt()->error_worker == 2);
  CHECK(policy.halt()->error_at == common::SteadyTime{} + std::chrono::milliseconds(1500));
  REQUIRE(policy.firstError());
  CHECK(policy.firstError()->step == "login");
  auto v = policy.verdict(false, false);
  CHECK(v.outcome == Outcome::Halted);
  CHECK(v.exit_code == 1);
}

TEST_CASE("after a halt, later errors are also_failed, at most 20, and halt nothing more",
          "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First));
  CHECK(policy.onError(error("a", "status", 1), false, 0, 0) == Decision::Halt);
  for (int i = 0; i < 30; ++i)
    CHECK(policy.onError(error("b", "timeout", 2 + i), false, 1, 0) == Decision::Continue);
  CHECK(policy.halt()->also_failed.size() == master::kAlsoFailedListed);
  CHECK(policy.halt()->also_failed.front().step == "b");
  CHECK(policy.firstError()->step == "a");
}

TEST_CASE("on_error never: errors are kept but do not halt", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::Never));
  CHECK(policy.onError(error("a", "status", 1), false, 0, 0) == Decision::Continue);
  CHECK(policy.onError(error("b", "status", 2), false, 0, 0) == Decision::Continue);
  CHECK_FALSE(policy.halt());
  REQUIRE(policy.firstError());
  CHECK(policy.firstError()->step == "a");
  CHECK(policy.verdict(false, false).exit_code == 0);
}

TEST_CASE("data exhausted halts whatever on_error says", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::Never));
  CHECK(policy.onError(error("", "data_exhausted", 700), true, 3, 0.7) == Decision::Halt);
  CHECK(policy.halt()->reason == HaltReason::DataExhausted);
  CHECK(policy.halt()->error_kind == "data_exhausted");
  CHECK(policy.halt()->error_worker == 3);
  CHECK(policy.halt()->error_at.has_value());
  CHECK(policy.verdict(false, false).exit_code == 1);
}

TEST_CASE("data exhausted after an earlier error keeps that error as the first", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::Never));
  CHECK(policy.onError(error("a", "status", 1), false, 0, 0) == Decision::Continue);
  CHECK(policy.onError(error("", "data_exhausted", 2), true, 1, 0) == Decision::Halt);
  CHECK(policy.firstError()->step == "a");
}

TEST_CASE("on_error count halts when the cluster's count reaches N", "[halt_policy]") {
  auto s = spec(OnError::Count);
  s.error_count = 5;
  HaltPolicy policy(s);
  CHECK(policy.onError(error("pay", "status", 1), false, 0, 0) == Decision::Continue);
  CHECK(policy.onErrorCount(4, 1.0) == Decision::Continue);
  CHECK(policy.onErrorCount(5, 1.2) == Decision::Halt);
  CHECK(policy.halt()->reason == HaltReason::ErrorCount);
  CHECK(policy.halt()->observed == 5.0);
  CHECK(policy.halt()->step == "pay");
  CHECK(policy.halt()->at_s == 1.2);
  CHECK(policy.onErrorCount(9, 1.3) == Decision::Continue);
  CHECK(policy.verdict(false, false).exit_code == 1);
}

TEST_CASE("an error count does not halt under any other on_error", "[halt_policy]") {
  auto s = spec(OnError::Never);
  s.error_count = 0;
  HaltPolicy policy(s);
  CHECK(policy.onErrorCount(1000, 1) == Decision::Continue);
  CHECK_FALSE(policy.halt());
}

TEST_CASE("an abort threshold breach halts with its expression and value", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::Never));
  CHECK(policy.onThresholdBreach("p99 < 100ms", 250.0, 3) == Decision::Halt);
  CHECK(policy.halt()->reason == HaltReason::Threshold);
  CHECK(policy.halt()->threshold == "p99 < 100ms");
  CHECK(policy.halt()->observed == 250.0);
  auto v = policy.verdict(true, false);
  CHECK(v.outcome == Outcome::Halted);
  CHECK(v.exit_code == 1);
}

TEST_CASE("an error rate breach halts with the observed rate", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::Rate));
  CHECK(policy.onErrorRate(0.25, 4) == Decision::Halt);
  CHECK(policy.halt()->reason == HaltReason::ErrorRate);
  CHECK(policy.halt()->observed == 0.25);
  CHECK(policy.verdict(false, false).exit_code == 1);
}

TEST_CASE("a lost worker halts with exit 3 under on_worker_lost: halt", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First, OnWorkerLost::Halt));
  CHECK(policy.onWorkerLost(2) == Decision::Halt);
  CHECK(policy.halt()->reason == HaltReason::WorkerLost);
  CHECK(policy.verdict(false, false).exit_code == 3);
}

TEST_CASE("a lost worker under on_worker_lost: continue goes on and exits 0", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First, OnWorkerLost::Continue));
  CHECK(policy.onWorkerLost(2) == Decision::Continue);
  CHECK_FALSE(policy.halt());
  CHECK(policy.verdict(false, false).exit_code == 0);
}

TEST_CASE("a lost worker under on_worker_lost: rejoin goes on and exits 0", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First, OnWorkerLost::Rejoin));
  CHECK(policy.onWorkerLost(2) == Decision::Continue);
  CHECK_FALSE(policy.halt());
  CHECK(policy.verdict(false, false).exit_code == 0);
}

TEST_CASE("a worker that left never halts the run", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First, OnWorkerLost::Halt));
  CHECK(policy.onWorkerLeft() == Decision::Continue);
  CHECK_FALSE(policy.halt());
  CHECK(policy.verdict(false, false).exit_code == 0);
}

TEST_CASE("an interrupt halts with exit 130", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First));
  CHECK(policy.onInterrupted(1) == Decision::Halt);
  CHECK(policy.halt()->reason == HaltReason::Interrupted);
  auto v = policy.verdict(false, false);
  CHECK(v.outcome == Outcome::Halted);
  CHECK(v.exit_code == 130);
}

TEST_CASE("a run halts once: the first reason stays", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::First));
  CHECK(policy.onInterrupted(1) == Decision::Halt);
  CHECK(policy.onError(error("a", "status", 1), false, 0, 1.1) == Decision::Continue);
  CHECK(policy.onWorkerLost(1.2) == Decision::Continue);
  CHECK(policy.onThresholdBreach("x", 1.0, 1.3) == Decision::Continue);
  CHECK(policy.onErrorRate(1.0, 1.4) == Decision::Continue);
  CHECK(policy.halt()->reason == HaltReason::Interrupted);
  CHECK(policy.halt()->at_s == 1);
  // The error arrived after the halt but was the run's first: it is the first error.
  CHECK(policy.firstError()->step == "a");
  CHECK(policy.verdict(false, false).exit_code == 130);
}

TEST_CASE("a failed threshold without a halt fails the run with exit 1", "[halt_policy]") {
  HaltPolicy policy(spec(OnError::Never));
  auto v = policy.verdict(true, false);
  CHECK(v.outcome == Outcome::Failed);
  CHECK(v.exit_code == 1);
}

TEST_CASE("outputs not written turn only a passing run into exit 3", "[halt_policy]") {
  HaltPolicy passed(spec(OnError::Never));
  CHECK(passed.verdict(false, true).exit_code == 3);
  CHECK(passed.verdict(false, true).outcome == Outcome::Passed);
  CHECK(passed.verdict(true, true).exit_code == 1);
  HaltPolicy interrupted(spec(OnError::Never));
  CHECK(interrupted.onInterrupted(0) == Decision::Halt);
  CHECK(interrupted.verdict(false, true).exit_code == 130);
  CHECK(HaltPolicy::afterOutputFailure(0) == 3);
  CHECK(HaltPolicy::afterOutputFailure(1) == 1);
}
