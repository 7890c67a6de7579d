#include "common/stats.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using stampede::common::StatsBook;
using stampede::common::StatsHandOff;
using stampede::common::StepStats;

namespace {

StepStats sampleStep(uint64_t scale, int64_t latency_us) {
  StepStats s;
  s.requests = 10 * scale;
  s.errors = 2 * scale;
  s.cancelled = 1 * scale;
  s.dropped = 3 * scale;
  s.bytes_in = 1'000 * scale;
  s.bytes_out = 100 * scale;
  s.errors_by_kind["http_500"] = scale;
  s.errors_by_kind["timeout"] = scale;
  s.latency_us.record(latency_us);
  return s;
}

void requireZero(const StepStats& s) {
  REQUIRE(s.requests == 0);
  REQUIRE(s.errors == 0);
  REQUIRE(s.cancelled == 0);
  REQUIRE(s.dropped == 0);
  REQUIRE(s.bytes_in == 0);
  REQUIRE(s.bytes_out == 0);
  REQUIRE(s.errors_by_kind.empty());
  REQUIRE(s.latency_us.count() == 0);
}

} // namespace

TEST_CASE("step stats merge adds every counter, error kind and latency sample", "[stats]") {
  StepStats a = sampleStep(1, 1'000);
  StepStats b = sampleStep(2, 9'000);
  b.errors_by_kind["connect_refused"] = 7;
  a.merge(b);
  REQUIRE(a.requests == 30);
  REQUIRE(a.errors == 6);
  REQUIRE(a.cancelled == 3);
  REQUIRE(a.dropped == 9);
  REQUIRE(a.bytes_in == 3'000);
  REQUIRE(a.bytes_out == 300);
  REQUIRE(a.errors_by_kind.at("http_500") == 3);
  REQUIRE(a.errors_by_kind.at("timeout") == 3);
  REQUIRE(a.errors_by_kind.at("connect_refused") == 7);
  REQUIRE(a.errors_by_kind.size() == 3);
  REQUIRE(a.latency_us.count() == 2);
  REQUIRE(a.latency_us.minUs() == 1'000);
  REQUIRE(a.latency_us.maxUs() == 9'000);
}

TEST_CASE("step stats reset zeroes every counter, error kind and histogram", "[stats]") {
  StepStats s = sampleStep(5, 4'000);
  s.reset();
  requireZero(s);
}

TEST_CASE("stats book merge grows to fit a book with more steps", "[stats]") {
  StatsBook master_book; // the master starts with no steps at all
  StatsBook worker_book(3);
  worker_book.steps[2] = sampleStep(1, 2'000);
  master_book.merge(worker_book);
  REQUIRE(master_book.steps.size() == 3);
  REQUIRE(master_book.steps[2].requests == 10);
  REQUIRE(master_book.steps[0].requests == 0);

  // A shorter book merges into the leading steps and does not shrink the larger one.
  StatsBook short_book(1);
  short_book.steps[0] = sampleStep(1, 3'000);
  master_book.merge(short_book);
  REQUIRE(master_book.steps.size() == 3);
  REQUIRE(master_book.steps[0].requests == 10);
  REQUIRE(master_book.steps[2].requests == 10);
}

TEST_CASE("stats book total sums every step", "[stats]") {
  StatsBook book(3);
  book.steps[0] = sampleStep(1, 1'000);
  book.steps[2] = sampleStep(4, 50'000);
  const StepStats total = book.total();
  REQUIRE(total.requests == 50);
  REQUIRE(total.errors == 10);
  REQUIRE(total.bytes_in == 5'000);
  REQUIRE(total.errors_by_kind.at("http_500") == 5);
  REQUIRE(total.latency_us.count() == 2);
  REQUIRE(total.latency_us.maxUs() == 50'000);
}

TEST_CASE("stats book reset keeps its steps but zeroes them", "[stats]") {
  StatsBook book(2);
  book.steps[0] = sampleStep(1, 1'000);
  book.steps[1] = sampleStep(2, 2'000);
  book.reset();
  REQUIRE(book.steps.size() == 2);
  requireZero(book.steps[0]);
  requireZero(book.steps[1]);
}

TEST_CASE("a closed-model book allocates no service or lag histogram", "[stats]") {
  // A closed-model load thread records latencies only: the service and lag histograms, 139 KB
  // of counters each, stay unallocated, in the book and in the spare one it swaps with.
  StatsHandOff hand_off(2);
  for (int i = 0; i < 100; ++i)
    hand_off.update([&](StatsBook& book) { book.steps[1].latency_us.record(1'000 + i); });
  StatsBook into;
  hand_off.collect(into);
  hand_off.collect(into);
  REQUIRE(into.steps[1].latency_us.count() == 100);
  REQUIRE(into.steps[1].latency_us.allocated());
  REQUIRE_FALSE(into.steps[0].latency_us.allocated());
  REQUIRE_FALSE(into.steps[1].service_us.allocated());
  REQUIRE_FALSE(into.steps[1].schedule_lag_us.allocated());
}

TEST_CASE("stats hand-off delivers every count exactly once while the writer runs", "[stats]") {
  // A writer records without pause while the collector swaps and merges books: nothing is lost
  // or counted twice, and each collect hands over only what came since the last one.
  constexpr uint64_t kWrites = 200'000;
  StatsHandOff hand_off(1);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (uint64_t i = 0; i < kWrites; ++i)
      hand_off.update([&](StatsBook& book) {
        ++book.steps[0].requests;
        book.steps[0].latency_us.record(int64_t(i % 5'000));
      });
    done.store(true);
  });
  StatsBook total;
  int collects = 0;
  while (!done.load()) {
    StatsBook delta;
    hand_off.collect(delta);
    REQUIRE(delta.steps.size() == 1);
    REQUIRE(delta.steps[0].requests == delta.steps[0].latency_us.count());
    total.merge(delta);
    ++collects;
  }
  writer.join();
  hand_off.collect(total);
  REQUIRE(collects > 0);
  REQUIRE(total.steps[0].requests == kWrites);
  REQUIRE(total.steps[0].latency_us.count() == kWrites);
  REQUIRE(total.steps[0].latency_us.maxUs() == 4'999);
  StatsBook after;
  hand_off.collect(after);
  requireZero(after.steps[0]);
}
