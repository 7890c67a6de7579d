#include "common/protocol.h"
#include "master/divergence.h"

#include <catch2/catch.hpp>

using stampede::master::Divergence;

namespace {

// One step: `requests` requests of `latency_us` each, `errors` of them errors.
stampede::wire::Stats delta(uint64_t requests, uint64_t errors, int64_t latency_us) {
  stampede::common::StatsBook book(1);
  auto& step = book.steps[0];
  step.requests = requests;
  step.errors = errors;
  if (errors)
    step.errors_by_kind["http_500"] = errors;
  for (uint64_t i = 0; i < requests; ++i)
    step.latency_us.record(latency_us);
  stampede::wire::Stats out;
  stampede::common::statsToWire(book, out);
  return out;
}

} // namespace

TEST_CASE("a worker much slower than the rest is divergent, the rest are not", "[divergence]") {
  Divergence d;
  d.add(0, delta(1000, 0, 2'000));
  d.add(1, delta(1000, 0, 2'500));
  d.add(2, delta(1000, 0, 300'000));
  const auto judged = d.judge();
  CHECK(judged.at(0).divergent.empty());
  CHECK(judged.at(1).divergent.empty());
  CHECK_THAT(judged.at(2).divergent, Catch::Contains("latency p99 3"));
  // Log buckets: at most 4.5 % above the true value, never below.
  CHECK(judged.at(2).p99_ms >= 300.0);
  CHECK(judged.at(2).p99_ms < 300.0 * 1.045);
}

TEST_CASE("divergence needs the stated margin and enough requests", "[divergence]") {
  SECTION("twice as slow but under 50 ms apart: not divergent") {
    Divergence d;
    d.add(0, delta(1000, 0, 10'000));
    d.add(1, delta(1000, 0, 40'000));
    CHECK(d.judge().at(1).divergent.empty());
  }
  SECTION("an error rate 30 points above the rest's") {
    Divergence d;
    d.add(0, delta(1000, 10, 1'000));
    d.add(1, delta(1000, 300, 1'000));
    CHECK_THAT(d.judge().at(1).divergent, Catch::Contains("error rate 30.0% vs 1.0%"));
    CHECK(d.judge().at(0).divergent.empty());
    CHECK_THAT(d.liveNote(), Catch::Contains("DIVERGENT worker 1: error rate"));
  }
  SECTION("under 200 requests: no verdict") {
    Divergence d;
    d.add(0, delta(150, 0, 1'000));
    d.add(1, delta(150, 0, 900'000));
    CHECK(d.judge().at(1).divergent.empty());
    CHECK(d.liveNote().empty());
  }
}
