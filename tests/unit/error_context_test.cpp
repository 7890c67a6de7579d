#include "common/error_context.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>
#include <vector>

using stampede::common::ErrorContext;
using stampede::common::ErrorHandOver;

namespace {

ErrorContext errorOf(const char* kind, bool data_exhausted = false) {
  ErrorContext e;
  e.error_kind = kind;
  e.data_exhausted = data_exhausted;
  return e;
}

} // namespace

TEST_CASE("a later error handed over before the consumer wakes does not replace the first",
          "[halt][error]") {
  // The schedule of the race: the first request fails, then a feeder runs out, both before
  // the control thread takes anything (the worker once kept one slot, and the second won).
  ErrorHandOver hand_over;
  CHECK(hand_over.offer(errorOf("http_500")));
  CHECK_FALSE(hand_over.offer(errorOf("data_exhausted", true)));
  const auto taken = hand_over.take();
  REQUIRE(taken.size() == 2);
  CHECK(taken[0].error_kind == "http_500");
  CHECK_FALSE(taken[0].data_exhausted);
  CHECK(taken[1].error_kind == "data_exhausted");
  CHECK(taken[1].data_exhausted);
  CHECK(hand_over.first()->error_kind == "http_500");
}

TEST_CASE("the first error is taken once and stays the first after it is taken", "[halt][error]") {
  ErrorHandOver hand_over;
  hand_over.offer(errorOf("timeout"));
  REQUIRE(hand_over.take().size() == 1);
  CHECK_FALSE(hand_over.offer(errorOf("http_503")));
  const auto later = hand_over.take();
  REQUIRE(later.size() == 1);
  CHECK(later[0].error_kind == "http_503");
  CHECK(hand_over.take().empty());
  CHECK(hand_over.first()->error_kind == "timeout");
}

TEST_CASE("later errors are counted, and only a few are kept", "[halt][error]") {
  ErrorHandOver hand_over(2);
  for (int i = 0; i < 10; ++i)
    hand_over.offer(errorOf(i == 0 ? "first" : "later"));
  CHECK(hand_over.offered() == 10);
  const auto taken = hand_over.take();
  REQUIRE(taken.size() == 3); // the first and two later ones
  CHECK(taken[0].error_kind == "first");
  hand_over.offer(errorOf("later still"));
  CHECK(hand_over.take().empty()); // the allowance is per run, not per take
  CHECK(hand_over.offered() == 11);
}

TEST_CASE("reset starts a new run's first error", "[halt][error]") {
  ErrorHandOver hand_over;
  hand_over.offer(errorOf("old run"));
  hand_over.reset();
  CHECK_FALSE(hand_over.first());
  CHECK(hand_over.offer(errorOf("new run")));
  CHECK(hand_over.take().at(0).error_kind == "new run");
}

TEST_CASE("of errors offered from many threads at once, exactly one is the first",
          "[halt][error]") {
  ErrorHandOver hand_over(1000);
  std::atomic<int> firsts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i)
        if (hand_over.offer(errorOf(t == 0 ? "a" : "b")))
          ++firsts;
    });
  for (auto& t : threads)
    t.join();
  CHECK(firsts == 1);
  CHECK(hand_over.offered() == 800);
  const auto taken = hand_over.take();
  REQUIRE(taken.size() == 800);
  CHECK(taken[0].error_kind == hand_over.first()->error_kind);
}
