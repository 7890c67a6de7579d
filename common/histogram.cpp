#include "common/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <new>

namespace stampede::common {

namespace {

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();
// Counters 0..2047 hold one value each; past them, bucket k >= 1 holds 1024 counters of
// width 2^k, starting at index k * 1024 + 1024.
constexpr size_t kHalfSubBuckets = Histogram::kSubBucketCount / 2;
constexpr int kHalfSubBucketBits = 10;
constexpr int kSubBucketBits = 11;

static_assert(Histogram::kSubBucketCount == 1 << kSubBucketBits);
static_assert(kHalfSubBuckets == 1 << kHalfSubBucketBits);
// The largest trackable value must land inside the counter array, or record() would need a
// bounds check on the hot path.
static_assert(Histogram::kMaxTrackableUs <
              (int64_t{1} << (Histogram::kBucketCount - 1 + kSubBucketBits)));

// Nearest rank (1-based) of `percentile` among `count` samples. Plain ceil() would turn
// 99.9 % of 200,000 (199,800.00000000003 in floating point) into 199,801; a rank within
// rounding noise of an integer is that integer.
uint64_t nearestRank(double percentile, uint64_t count) {
  const double exact = percentile / 100.0 * double(count);
  const double rounded = std::round(exact);
  double rank =
      std::fabs(exact - rounded) <= 1e-9 * std::max(1.0, exact) ? rounded : std::ceil(exact);
  rank = std::clamp(rank, 1.0, double(count));
  return uint64_t(rank);
}

// Representative value of a counter: the midpoint of what it can hold halves the worst relative
// error of highestEquivalent() (0.05 % instead of 0.1 %). The exact min and max narrow that
// range in the first and last used counters.
int64_t midpointOf(size_t index, int64_t min_us, int64_t max_us) {
  const int64_t low = std::max(Histogram::lowestEquivalent(index), min_us);
  const int64_t high = std::min(Histogram::highestEquivalent(index), max_us);
  return low + (high - low) / 2;
}

} // namespace

Histogram::Histogram() : min_us_(kInt64Max) {}

void Histogram::allocate() {
  counts_.allocate();
}

void Histogram::Counters::allocate() {
  data_ = static_cast<uint64_t*>(std::calloc(kCounterCount, sizeof(uint64_t)));
  if (!data_)
    throw std::bad_alloc();
}

Histogram::Counters::Counters(const Counters& other) {
  if (other.data_) {
    allocate();
    std::copy(other.data_, other.data_ + kCounterCount, data_);
  }
}

Histogram::Counters& Histogram::Counters::operator=(const Counters& other) {
  if (this != &other)
    *this = Counters(other);
  return *this;
}

Histogram::Counters& Histogram::Counters::operator=(Counters&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
  }
  return *this;
}

size_t Histogram::firstUsed() const noexcept {
  return indexOf(min_us_);
}

size_t Histogram::lastUsed() const noexcept {
  return indexOf(max_us_); // clamped: an overflowed max maps to the last counter
}

size_t Histogram::indexOf(int64_t value_us) noexcept {
  // Clamped, so any input maps to a valid counter; record() routes the clamped ones to overflow.
  const auto v = uint64_t(std::clamp<int64_t>(value_us, 0, kMaxTrackableUs));
  // OR-ing in the low 11 bits makes values below 2048 land in "bucket 0" (shift 0, index = v)
  // with no branch.
  const int shift = std::bit_width(v | (kSubBucketCount - 1)) - kSubBucketBits;
  return (size_t(shift) << kHalfSubBucketBits) + size_t(v >> shift);
}

int64_t Histogram::lowestEquivalent(size_t index) noexcept {
  index = std::min(index, kCounterCount - 1);
  if (index < size_t(kSubBucketCount))
    return int64_t(index);
  const size_t shift = index / kHalfSubBuckets - 1;
  const size_t sub_bucket = index - shift * kHalfSubBuckets;
  return int64_t(sub_bucket << shift);
}

int64_t Histogram::highestEquivalent(size_t index) noexcept {
  index = std::min(index, kCounterCount - 1);
  if (index < size_t(kSubBucketCount))
    return int64_t(index);
  const size_t shift = index / kHalfSubBuckets - 1;
  return lowestEquivalent(index) + (int64_t{1} << shift) - 1;
}

void Histogram::record(int64_t value_us) {
  if (counts_.empty()) [[unlikely]]
    allocate(); // first, so that a bad_alloc leaves *this as it was
  const int64_t v = std::max<int64_t>(value_us, 0);
  const bool over = v > kMaxTrackableUs;
  ++count_;
  // Unsigned add: a wrapped sum is a wrong figure, signed overflow would be undefined.
  sum_us_ = int64_t(uint64_t(sum_us_) + uint64_t(v));
  min_us_ = std::min(min_us_, v);
  max_us_ = std::max(max_us_, v);
  overflow_ += over;
  // indexOf clamps, so an overflowing value touches the last counter by zero: no branch.
  counts_[indexOf(v)] += !over;
}

void Histogram::merge(const Histogram& other) {
  if (other.count_ == 0)
    return;
  if (!other.counts_.empty()) {
    if (counts_.empty())
      allocate();
    // Every counter other than zero lies between those of the exact min and max.
    for (size_t i = other.firstUsed(), last = other.lastUsed(); i <= last; ++i)
      counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  overflow_ += other.overflow_;
  sum_us_ = int64_t(uint64_t(sum_us_) + uint64_t(other.sum_us_));
  min_us_ = std::min(min_us_, other.min_us_);
  max_us_ = std::max(max_us_, other.max_us_);
}

void Histogram::reset() noexcept {
  if (count_ == 0)
    return; // untouched since the last reset
  if (!counts_.empty())
    std::fill(counts_.data() + firstUsed(), counts_.data() + lastUsed() + 1, uint64_t{0});
  count_ = 0;
  overflow_ = 0;
  min_us_ = kInt64Max;
  max_us_ = 0;
  sum_us_ = 0;
}

int64_t Histogram::percentileUs(double percentile) const {
  if (count_ == 0)
    return 0;
  if (!(percentile >= 0.0)) // also catches NaN
    percentile = 0.0;
  percentile = std::min(percentile, 100.0);
  const uint64_t rank = nearestRank(percentile, count_);
  // The first and last ranks are known exactly.
  if (rank == 1)
    return min_us_;
  if (rank == count_)
    return max_us_;
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank)
      return midpointOf(i, min_us_, max_us_);
  }
  // The rank falls among the overflowed samples, of which only the largest is known.
  return max_us_;
}

std::vector<int64_t> Histogram::encodeCounts() const {
  std::vector<int64_t> out;
  int64_t zero_run = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    const uint64_t c = counts_[i];
    if (c == 0) {
      ++zero_run;
      continue;
    }
    if (zero_run > 0) {
      out.push_back(-zero_run);
      zero_run = 0;
    }
    out.push_back(int64_t(c));
  }
  // A trailing zero run is dropped: the decoder zero-fills the rest.
  return out;
}

bool Histogram::decode(uint32_t layout_id, std::span<const int64_t> counts, uint64_t count,
                       uint64_t overflow, int64_t min_us, int64_t max_us, int64_t sum_us) {
  reset();
  if (!validEncoded(layout_id, counts, count, overflow, min_us, max_us, sum_us))
    return false;
  addEncoded(counts, count, overflow, min_us, max_us, sum_us);
  return true;
}

bool Histogram::validEncoded(uint32_t layout_id, std::span<const int64_t> counts, uint64_t count,
                             uint64_t overflow, int64_t min_us, int64_t max_us, int64_t sum_us) {
  if (layout_id != kLayoutId || overflow > count)
    return false;

  const uint64_t tracked = count - overflow; // what the counters must add up to
  uint64_t total = 0;
  size_t index = 0;
  size_t first_used = kCounterCount;
  size_t last_used = 0;
  for (const int64_t entry : counts) {
    if (entry < 0) {
      // -(INT64_MIN) does not exist; compare in unsigned to stay defined.
      const uint64_t run = uint64_t(0) - uint64_t(entry);
      if (run > kCounterCount - index)
        return false;
      index += size_t(run);
      continue;
    }
    if (index >= kCounterCount)
      return false;
    const auto c = uint64_t(entry);
    if (c > tracked - total) // checked before adding, so the running total never wraps
      return false;
    total += c;
    if (c > 0) {
      first_used = std::min(first_used, index);
      last_used = index;
    }
    ++index;
  }
  if (total != tracked)
    return false;

  if (count == 0) {
    // An empty histogram's accessors report zeros; anything else was not made by encode.
    return min_us == 0 && max_us == 0 && sum_us == 0;
  }
  if (min_us < 0 || min_us > max_us)
    return false;
  // The exact min and max must fall in the first and last used counters (or overflow), or
  // percentiles clamped to them would be wrong.
  if (tracked > 0 && (indexOf(min_us) != first_used || min_us > kMaxTrackableUs))
    return false;
  if (tracked == 0 && min_us <= kMaxTrackableUs)
    return false;
  if (overflow > 0 && max_us <= kMaxTrackableUs)
    return false;
  if (overflow == 0 && (indexOf(max_us) != last_used || max_us > kMaxTrackableUs))
    return false;
  // min * count <= sum <= max * count, in long double: the products can exceed int64.
  const long double n = static_cast<long double>(count);
  const long double sum = static_cast<long double>(sum_us);
  return sum >= static_cast<long double>(min_us) * n && sum <= static_cast<long double>(max_us) * n;
}

void Histogram::addEncoded(std::span<const int64_t> counts, uint64_t count, uint64_t overflow,
                           int64_t min_us, int64_t max_us, int64_t sum_us) {
  if (count == 0)
    return;
  if (count > overflow) { // else every counter of the wire form is zero
    if (counts_.empty())
      allocate();
    size_t index = 0;
    for (const int64_t entry : counts) {
      if (entry < 0) {
        index += size_t(uint64_t(0) - uint64_t(entry));
        continue;
      }
      counts_[index++] += uint64_t(entry);
    }
  }
  count_ += count;
  overflow_ += overflow;
  sum_us_ = int64_t(uint64_t(sum_us_) + uint64_t(sum_us));
  min_us_ = std::min(min_us_, min_us);
  max_us_ = std::max(max_us_, max_us);
}

} // namespace stampede::common
