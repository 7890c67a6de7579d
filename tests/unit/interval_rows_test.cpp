#include "master/interval_rows.h"

#include "common/protocol.h"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using stampede::common::SteadyTime;
using stampede::master::IntervalRow;
using stampede::master::IntervalRows;

namespace {

const SteadyTime kT0 = SteadyTime{} + 1000s;

stampede::wire::Stats delta(uint64_t requests, uint32_t users = 4) {
  stampede::common::StatsBook book(1);
  book.steps[0].requests = requests;
  for (uint64_t i = 0; i < requests; ++i)
    book.steps[0].latency_us.record(1000);
  stampede::wire::Stats stats;
  stampede::common::statsToWire(book, stats);
  stats.set_active_users(users);
  return stats;
}

uint64_t sum(const std::vector<IntervalRow>& rows) {
  uint64_t total = 0;
  for (const auto& row : rows)
    total += row.requests;
  return total;
}

} // namespace

TEST_CASE("interval rows: a delta goes to the second its requests were made in", "[timeseries]") {
  IntervalRows rows(kT0, 4s);
  rows.add(0, kT0 + 1s, delta(100));
  rows.add(0, kT0 + 2s, delta(200));
  // Row 1 is complete once the worker has cut past its end; row 2 waits for the next cut.
  auto written = rows.take(kT0 + 2100ms, {0});
  REQUIRE(written.size() == 2);
  CHECK(written[0].requests == 100);
  CHECK(written[0].elapsed_s == 1.0);
  CHECK(written[0].users == 4);
  CHECK(written[1].requests == 200);
  CHECK(rows.take(kT0 + 2200ms, {0}).empty());
}

TEST_CASE("interval rows: a late Stats lands in its own row, not the one it arrives in",
          "[timeseries]") {
  IntervalRows rows(kT0, 4s);
  // Two workers; worker 1's Stats for seconds 2 and 3 arrive together after a partition.
  rows.add(0, kT0 + 1s, delta(100));
  rows.add(1, kT0 + 1s, delta(100));
  rows.add(0, kT0 + 2s, delta(100));
  rows.add(0, kT0 + 3s, delta(100));
  auto first = rows.take(kT0 + 3100ms, {0, 1});
  REQUIRE(first.size() == 1); // second 2 waits for worker 1
  CHECK(first[0].requests == 200);
  rows.add(1, kT0 + 2s, delta(100));
  rows.add(1, kT0 + 3s, delta(100));
  auto after = rows.take(kT0 + 3200ms, {0, 1});
  REQUIRE(after.size() == 2);
  CHECK(after[0].requests == 200);
  CHECK(after[1].requests == 200);
  CHECK_FALSE(after[1].late);
}

TEST_CASE("interval rows: a frozen worker's delta goes to the second before its gap",
          "[timeseries]") {
  IntervalRows rows(kT0, 10s);
  rows.add(0, kT0 + 1s, delta(100));
  // Frozen from 1.5 s to 3.6 s: its next delta covers 1 s to 3.6 s, made in second 2.
  rows.add(0, kT0 + 3600ms, delta(50));
  auto written = rows.take(kT0 + 3700ms, {0});
  REQUIRE(written.size() == 3);
  CHECK(written[1].requests == 50);
  CHECK(written[2].requests == 0);
}

TEST_CASE("interval rows: after the grace period a row is written; what comes later is late",
          "[timeseries]") {
  IntervalRows rows(kT0, 2s);
  rows.add(0, kT0 + 1s, delta(100));
  rows.add(1, kT0 + 1s, delta(100));
  rows.add(0, kT0 + 2s, delta(100));
  rows.add(0, kT0 + 3s, delta(100));
  // Worker 1 silent: second 2 is written at 2 s + grace without it.
  CHECK(rows.take(kT0 + 3500ms, {0, 1}).size() == 1);
  auto written = rows.take(kT0 + 4100ms, {0, 1});
  REQUIRE(written.size() == 1);
  CHECK(written[0].requests == 100);
  rows.add(1, kT0 + 2s, delta(80));
  auto late = rows.take(kT0 + 4200ms, {0, 1});
  REQUIRE(late.size() == 1);
  CHECK(late[0].late);
  CHECK(late[0].elapsed_s == 2.0);
  CHECK(late[0].requests == 80);
}

TEST_CASE("interval rows: the last short row divides by its real length", "[timeseries]") {
  IntervalRows rows(kT0, 4s);
  rows.add(0, kT0 + 1s, delta(1000));
  rows.add(0, kT0 + 2s, delta(1000));
  rows.add(0, kT0 + 2500ms, delta(500, 0)); // Final, half a second
  auto written = rows.take(kT0 + 2600ms, {});
  auto last = rows.finish();
  written.insert(written.end(), last.begin(), last.end());
  REQUIRE(written.size() == 3);
  CHECK(sum(written) == 2500);
  CHECK(written[2].elapsed_s == Approx(2.5));
  CHECK(written[2].length_s == Approx(0.5));
  CHECK(double(written[2].requests) / written[2].length_s == Approx(1000));
}

TEST_CASE("interval rows: a stub of a last row joins the row before it", "[timeseries]") {
  IntervalRows rows(kT0, 4s);
  rows.add(0, kT0 + 1s, delta(1000));
  rows.add(0, kT0 + 2s, delta(1000));
  rows.add(0, kT0 + 2050ms, delta(50, 0));
  auto written = rows.finish();
  REQUIRE(written.size() == 2);
  CHECK(written[1].requests == 1050);
  CHECK(written[1].length_s == Approx(1.05));
  CHECK(written[1].elapsed_s == Approx(2.05));
}

TEST_CASE("interval rows: a worker's pace is its last delta", "[timeseries]") {
  IntervalRows rows(kT0, 4s);
  CHECK_FALSE(rows.pace(3));
  rows.add(3, kT0 + 1s, delta(100));
  rows.add(3, kT0 + 2s, delta(300));
  auto pace = rows.pace(3);
  REQUIRE(pace);
  CHECK(pace->last_at == kT0 + 2s);
  CHECK(pace->last_requests == 300);
  CHECK(pace->last_span_s == Approx(1.0));
}
