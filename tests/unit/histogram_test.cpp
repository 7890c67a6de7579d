#include "common/histogram.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using stampede::common::Histogram;

namespace {

constexpr size_t kSampleCount = 200'000;
constexpr int64_t kTenSecondsUs = 10'000'000;

int64_t clampToRange(double us) {
  return std::clamp<int64_t>(int64_t(std::llround(us)), 1, kTenSecondsUs);
}

std::vector<int64_t> uniformSamples() {
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> dist(1, kTenSecondsUs);
  std::vector<int64_t> out(kSampleCount);
  for (auto& v : out)
    v = dist(rng);
  return out;
}

std::vector<int64_t> exponentialSamples() {
  std::mt19937_64 rng(43);
  std::exponential_distribution<double> dist(1.0 / 20'000.0); // mean 20 ms
  std::vector<int64_t> out(kSampleCount);
  for (auto& v : out)
    v = clampToRange(dist(rng));
  return out;
}

// A fast cache-hit mode around 2 ms and a slow mode around 800 ms with a long tail.
std::vector<int64_t> bimodalSamples() {
  std::mt19937_64 rng(44);
  std::bernoulli_distribution slow(0.3);
  std::normal_distribution<double> fast_mode(2'000.0, 300.0);
  std::lognormal_distribution<double> slow_mode(std::log(800'000.0), 0.6);
  std::vector<int64_t> out(kSampleCount);
  for (auto& v : out)
    v = clampToRange(slow(rng) ? slow_mode(rng) : fast_mode(rng));
  return out;
}

// Evenly spread over every power of two from 1 us to 10 s, so every bucket is exercised.
std::vector<int64_t> logUniformSamples() {
  std::mt19937_64 rng(45);
  std::uniform_real_distribution<double> exponent(0.0, std::log(double(kTenSecondsUs)));
  std::vector<int64_t> out(kSampleCount);
  for (auto& v : out)
    v = clampToRange(std::exp(exponent(rng)));
  return out;
}

Histogram histogramOf(const std::vector<int64_t>& samples) {
  Histogram h;
  for (const auto v : samples)
    h.record(v);
  return h;
}

// Nearest rank in integer arithmetic, so the reference itself has no rounding doubt.
// `milli_percent` is the percentile times 1000 (99.9 % -> 99'900).
int64_t exactPercentile(const std::vector<int64_t>& sorted, uint64_t milli_percent) {
  const uint64_t n = sorted.size();
  const uint64_t rank = std::max<uint64_t>(1, (milli_percent * n + 99'999) / 100'000);
  return sorted[rank - 1];
}

void requirePercentilesWithinTenthOfAPercent(std::vector<int64_t> samples) {
  const Histogram h = histogramOf(samples);
  std::sort(samples.begin(), samples.end());
  for (const uint64_t milli_percent : {50'000u, 90'000u, 99'000u, 99'900u, 100'000u}) {
    const int64_t exact = exactPercentile(samples, milli_percent);
    const int64_t got = h.percentileUs(double(milli_percent) / 1000.0);
    INFO("p" << double(milli_percent) / 1000.0 << ": exact " << exact << " us, histogram " << got
             << " us");
    CHECK(std::abs(double(got - exact)) <= 0.001 * double(exact));
  }
  CHECK(h.percentileUs(100.0) == samples.back());
  CHECK(h.maxUs() == samples.back());
  CHECK(h.minUs() == samples.front());
}

struct Exact {
  uint64_t count, overflow;
  int64_t min_us, max_us, sum_us;
};

Exact exactFieldsOf(const Histogram& h) {
  return {h.count(), h.overflow(), h.minUs(), h.maxUs(), h.sumUs()};
}

bool decodeInto(Histogram& h, std::span<const int64_t> counts, const Exact& e,
                uint32_t layout = Histogram::kLayoutId) {
  return h.decode(layout, counts, e.count, e.overflow, e.min_us, e.max_us, e.sum_us);
}

void requireSameHistogram(const Histogram& a, const Histogram& b) {
  REQUIRE(a.count() == b.count());
  REQUIRE(a.overflow() == b.overflow());
  REQUIRE(a.minUs() == b.minUs());
  REQUIRE(a.maxUs() == b.maxUs());
  REQUIRE(a.sumUs() == b.sumUs());
  REQUIRE(a.encodeCounts() == b.encodeCounts());
  for (const double p : {0.0, 50.0, 90.0, 99.0, 99.9, 100.0})
    REQUIRE(a.percentileUs(p) == b.percentileUs(p));
}

void requireEmpty(const Histogram& h) {
  REQUIRE(h.count() == 0);
  REQUIRE(h.overflow() == 0);
  REQUIRE(h.minUs() == 0);
  REQUIRE(h.maxUs() == 0);
  REQUIRE(h.sumUs() == 0);
  REQUIRE(h.encodeCounts().empty());
}

// Bytes of the counts as protobuf `repeated sint64` (packed): zigzag varints.
size_t packedSint64Bytes(const std::vector<int64_t>& counts) {
  size_t bytes = 0;
  for (const int64_t v : counts) {
    uint64_t zigzag = (uint64_t(v) << 1) ^ uint64_t(v >> 63);
    do {
      ++bytes;
      zigzag >>= 7;
    } while (zigzag != 0);
  }
  return bytes;
}

} // namespace

TEST_CASE("percentiles are within 0.1 % of exact sorted samples for a uniform distribution",
          "[histogram]") {
  requirePercentilesWithinTenthOfAPercent(uniformSamples());
}

TEST_CASE("percentiles are within 0.1 % of exact sorted samples for an exponential distribution",
          "[histogram]") {
  requirePercentilesWithinTenthOfAPercent(exponentialSamples());
}

TEST_CASE("percentiles are within 0.1 % of exact sorted samples for a bimodal distribution",
          "[histogram]") {
  requirePercentilesWithinTenthOfAPercent(bimodalSamples());
}

TEST_CASE("percentiles are within 0.1 % of exact sorted samples spread over every bucket",
          "[histogram]") {
  requirePercentilesWithinTenthOfAPercent(logUniformSamples());
}

TEST_CASE("counters tile 0 to 60 s without gaps, each at most 0.1 % wide", "[histogram]") {
  const size_t last = Histogram::indexOf(Histogram::kMaxTrackableUs);
  REQUIRE(last < Histogram::kCounterCount);
  int64_t expected_low = 0;
  for (size_t i = 0; i <= last; ++i) {
    const int64_t low = Histogram::lowestEquivalent(i);
    const int64_t high = Histogram::highestEquivalent(i);
    INFO("counter " << i << " holds [" << low << ", " << high << "]");
    REQUIRE(low == expected_low);
    REQUIRE(high >= low);
    REQUIRE(Histogram::indexOf(low) == i);
    REQUIRE(Histogram::indexOf(high) == i);
    if (low >= Histogram::kSubBucketCount)
      REQUIRE(double(high - low + 1) / double(low) <= 1.0 / 1024.0);
    expected_low = high + 1;
  }
  REQUIRE(Histogram::highestEquivalent(last) >= Histogram::kMaxTrackableUs);
  // Anything larger is clamped to the last counter rather than indexing past the array.
  REQUIRE(Histogram::indexOf(std::numeric_limits<int64_t>::max()) == last);
}

TEST_CASE("values below 2048 us are kept exactly", "[histogram]") {
  Histogram h;
  for (int64_t v = 0; v < 2048; ++v)
    REQUIRE(Histogram::indexOf(v) == size_t(v));
  h.record(1);
  h.record(1);
  h.record(1999);
  REQUIRE(h.percentileUs(50.0) == 1);
  REQUIRE(h.percentileUs(99.0) == 1999);
}

TEST_CASE("percentile 0 reports the min and percentile 100 the max", "[histogram]") {
  Histogram h;
  for (const int64_t v : {123'457, 5'000'001, 77})
    h.record(v);
  REQUIRE(h.percentileUs(0.0) == 77);
  REQUIRE(h.percentileUs(100.0) == 5'000'001);
  // Out-of-range requests clamp instead of reading outside the counters.
  REQUIRE(h.percentileUs(-5.0) == 77);
  REQUIRE(h.percentileUs(250.0) == 5'000'001);
  REQUIRE(h.percentileUs(std::numeric_limits<double>::quiet_NaN()) == 77);
}

TEST_CASE("an empty histogram reports zeros everywhere", "[histogram]") {
  const Histogram h;
  requireEmpty(h);
  REQUIRE(h.meanUs() == 0.0);
  REQUIRE(h.percentileUs(50.0) == 0);
  REQUIRE(h.percentileUs(100.0) == 0);
}

TEST_CASE("negative values are recorded as zero", "[histogram]") {
  Histogram h;
  h.record(-5);
  h.record(std::numeric_limits<int64_t>::min());
  REQUIRE(h.count() == 2);
  REQUIRE(h.minUs() == 0);
  REQUIRE(h.maxUs() == 0);
  REQUIRE(h.sumUs() == 0);
  REQUIRE(h.percentileUs(100.0) == 0);
}

TEST_CASE("values above 60 s go to overflow yet count in max, sum and the top percentiles",
          "[histogram]") {
  Histogram h;
  for (int i = 0; i < 98; ++i)
    h.record(1'000);
  h.record(Histogram::kMaxTrackableUs); // the largest value still tracked
  h.record(90'000'000);
  REQUIRE(h.count() == 100);
  REQUIRE(h.overflow() == 1);
  REQUIRE(h.maxUs() == 90'000'000);
  REQUIRE(h.sumUs() == 98 * 1'000 + Histogram::kMaxTrackableUs + 90'000'000);
  REQUIRE(h.percentileUs(50.0) == 1'000);
  REQUIRE(std::abs(double(h.percentileUs(99.0) - Histogram::kMaxTrackableUs)) <=
          0.001 * double(Histogram::kMaxTrackableUs));
  REQUIRE(h.percentileUs(99.5) == 90'000'000);
  REQUIRE(h.percentileUs(100.0) == 90'000'000);
}

TEST_CASE("min, max, sum and mean are exact", "[histogram]") {
  Histogram h;
  for (const int64_t v : {2'049, 1'000'001, 333'333})
    h.record(v);
  REQUIRE(h.minUs() == 2'049);
  REQUIRE(h.maxUs() == 1'000'001);
  REQUIRE(h.sumUs() == 2'049 + 1'000'001 + 333'333);
  REQUIRE(h.meanUs() == Approx((2'049 + 1'000'001 + 333'333) / 3.0));
}

TEST_CASE("merging two histograms equals one histogram fed both", "[histogram]") {
  const auto first = exponentialSamples();
  const auto second = bimodalSamples();
  Histogram a = histogramOf(first);
  const Histogram b = histogramOf(second);
  Histogram both;
  for (const auto v : first)
    both.record(v);
  for (const auto v : second)
    both.record(v);
  both.record(70'000'000);
  Histogram with_overflow = b;
  with_overflow.record(70'000'000);

  a.merge(with_overflow);
  requireSameHistogram(a, both);
}

TEST_CASE("merging an empty histogram leaves min and max alone", "[histogram]") {
  Histogram a;
  a.record(500);
  a.record(7'000);
  const Histogram before = a;
  a.merge(Histogram{});
  requireSameHistogram(a, before);

  Histogram empty;
  empty.merge(before);
  requireSameHistogram(empty, before);
}

TEST_CASE("reset empties a histogram so it records afresh", "[histogram]") {
  Histogram h = histogramOf(uniformSamples());
  h.record(90'000'000);
  h.reset();
  requireEmpty(h);
  h.record(10);
  REQUIRE(h.minUs() == 10);
  REQUIRE(h.maxUs() == 10);
}

TEST_CASE("a histogram allocates its counters only when a value needs them", "[histogram]") {
  Histogram h;
  REQUIRE_FALSE(h.allocated());
  h.merge(Histogram{});
  h.reset();
  REQUIRE_FALSE(h.allocated());
  requireEmpty(h);
  REQUIRE(h.percentileUs(50) == 0);

  // Only overflowed values from the wire: nothing for the counters either, yet every figure
  // is kept.
  Histogram over;
  over.record(70'000'000);
  Histogram decoded;
  REQUIRE(decoded.decode(Histogram::kLayoutId, over.encodeCounts(), over.count(), over.overflow(),
                         over.minUs(), over.maxUs(), over.sumUs()));
  REQUIRE_FALSE(decoded.allocated());
  requireSameHistogram(decoded, over);
  REQUIRE(decoded.percentileUs(50) == 70'000'000);

  h.record(1'000);
  REQUIRE(h.allocated());
}

TEST_CASE("reset clears every counter between min and max, whatever filled them", "[histogram]") {
  // Counters filled by record, merge and addEncoded, spread over every bucket; after reset a
  // single new value must be all the histogram holds.
  Histogram h = histogramOf(uniformSamples());
  Histogram wide;
  wide.record(0);
  wide.record(59'999'999);
  h.merge(wide);
  const Histogram encoded = histogramOf(exponentialSamples());
  const auto counts = encoded.encodeCounts();
  h.addEncoded(counts, encoded.count(), encoded.overflow(), encoded.minUs(), encoded.maxUs(),
               encoded.sumUs());
  h.reset();
  requireEmpty(h);
  h.record(3'000);
  Histogram one;
  one.record(3'000);
  requireSameHistogram(h, one);
}

TEST_CASE("encode and decode round-trip a histogram exactly", "[histogram][wire]") {
  Histogram source;
  SECTION("empty") {}
  SECTION("one sample") {
    source.record(4'242);
  }
  SECTION("one sample of zero") {
    source.record(0);
  }
  SECTION("only overflow") {
    source.record(61'000'000);
  }
  SECTION("a full distribution with overflow") {
    source = histogramOf(bimodalSamples());
    source.record(Histogram::kMaxTrackableUs);
    source.record(61'000'000);
  }
  const auto counts = source.encodeCounts();
  Histogram copy;
  copy.record(999); // decode must replace, not add to, what was there
  REQUIRE(decodeInto(copy, counts, exactFieldsOf(source)));
  requireSameHistogram(copy, source);
}

TEST_CASE("encoding writes runs of empty counters as one negative number and trims the tail",
          "[histogram][wire]") {
  Histogram h;
  h.record(3);
  h.record(3);
  h.record(10);
  REQUIRE(h.encodeCounts() == std::vector<int64_t>{-3, 2, -6, 1});
}

TEST_CASE("a 10k-sample interval encodes to a few KB", "[histogram][wire]") {
  std::mt19937_64 rng(46);
  std::lognormal_distribution<double> latency(std::log(5'000.0), 0.5); // median 5 ms
  Histogram h;
  for (int i = 0; i < 10'000; ++i)
    h.record(int64_t(latency(rng)));
  const auto counts = h.encodeCounts();
  INFO(counts.size() << " entries, " << packedSint64Bytes(counts) << " bytes on the wire");
  REQUIRE(counts.size() < Histogram::kCounterCount / 4);
  REQUIRE(packedSint64Bytes(counts) < 4 * 1024); // DESIGN.md: "about 3 KB"
}

TEST_CASE("decode rejects malformed counts and leaves the histogram empty", "[histogram][wire]") {
  const Histogram source = histogramOf(exponentialSamples());
  const auto good = source.encodeCounts();
  Exact fields = exactFieldsOf(source);
  std::vector<int64_t> counts = good;
  uint32_t layout = Histogram::kLayoutId;
  constexpr int64_t kHuge = std::numeric_limits<int64_t>::max();

  SECTION("truncated") {
    counts.pop_back();
  }
  SECTION("empty counts for a non-empty histogram") {
    counts.clear();
  }
  SECTION("wrong layout id") {
    layout = Histogram::kLayoutId + 1;
  }
  SECTION("counts that do not sum to count") {
    fields.count += 1;
  }
  SECTION("overflow larger than count") {
    fields.overflow = fields.count + 1;
  }
  SECTION("an extra counter after the last one") {
    counts = {-int64_t(Histogram::kCounterCount), 1};
    fields = {1, 0, Histogram::kMaxTrackableUs, Histogram::kMaxTrackableUs,
              Histogram::kMaxTrackableUs};
  }
  SECTION("a zero run past the last counter") {
    counts = {-int64_t(Histogram::kCounterCount) - 1};
    fields = {0, 0, 0, 0, 0};
  }
  SECTION("more explicit counters than the layout holds") {
    counts.assign(Histogram::kCounterCount + 1, 1);
    fields = {Histogram::kCounterCount + 1, 0, 0, 67'000'000, 1};
  }
  SECTION("the most negative run length") {
    counts.insert(counts.begin(), INT64_MIN);
  }
  SECTION("positive huge counts") {
    counts = {kHuge, kHuge, kHuge, 3};
    fields.count = 2; // kHuge * 3 + 3 wraps to 2 in 64 bits
    fields.overflow = 0;
  }
  SECTION("a huge count whose sum cannot fit in 64 bits") {
    counts = {-100, kHuge};
    fields = {uint64_t(kHuge), 0, 100, 100, kHuge};
  }
  SECTION("min below the first used counter") {
    fields.min_us -= 1;
  }
  SECTION("max above the last used counter") {
    fields.max_us += 1'000;
  }
  SECTION("negative min") {
    fields.min_us = -1;
  }
  SECTION("min above max") {
    std::swap(fields.min_us, fields.max_us);
  }
  SECTION("sum below min * count") {
    fields.sum_us = fields.min_us;
  }
  SECTION("sum above max * count") {
    fields.sum_us = kHuge;
  }
  SECTION("overflow claimed but max within range") {
    fields.overflow = 1;
    fields.count += 1;
  }
  SECTION("an empty histogram with a max") {
    counts.clear();
    fields = {0, 0, 0, 5, 0};
  }

  Histogram h;
  h.record(123);
  REQUIRE_FALSE(decodeInto(h, counts, fields, layout));
  requireEmpty(h);
}

TEST_CASE("decode survives random garbage and accepts only consistent input", "[histogram][wire]") {
  std::mt19937_64 rng(47);
  std::uniform_int_distribution<int64_t> any_value(std::numeric_limits<int64_t>::min(),
                                                   std::numeric_limits<int64_t>::max());
  std::uniform_int_distribution<int64_t> small_value(-3'000, 3);
  std::uniform_int_distribution<size_t> length(0, 64);
  Histogram h;
  int accepted = 0;
  for (int i = 0; i < 20'000; ++i) {
    std::vector<int64_t> counts(length(rng));
    for (auto& v : counts)
      v = i % 2 ? any_value(rng) : small_value(rng);
    uint64_t total = 0;
    for (const auto v : counts)
      total += v > 0 ? uint64_t(v) : 0;
    // Half the time claim the true total, so that some inputs get past the first checks.
    const uint64_t count = i % 4 < 2 ? total : uint64_t(any_value(rng));
    const int64_t min_us = small_value(rng) + 3'000;
    const int64_t max_us = min_us + small_value(rng) + 3'000;
    if (h.decode(Histogram::kLayoutId, counts, count, 0, min_us, max_us, min_us)) {
      ++accepted;
      REQUIRE(h.count() == count);
      REQUIRE(h.percentileUs(50.0) >= h.minUs());
      REQUIRE(h.percentileUs(50.0) <= h.maxUs());
    } else {
      requireEmpty(h);
    }
  }
  // Most garbage is rejected; what gets through was self-consistent (checked above).
  REQUIRE(accepted < 20'000);
}
