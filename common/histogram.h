// A compact HDR histogram of latencies in microseconds: 1 us to 60 s at 3 significant digits
// (2048 sub-buckets, 17,408 counters, worst relative error 0.1 %), an overflow counter for
// values above 60 s, and exact min, max, count and sum. Not thread-safe: one owner at a time.
// The counters (139 KB) are allocated by the first value that needs them: a histogram that
// is never recorded into (the closed model's service and lag figures, a spare stats book)
// costs a few words.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <span>
#include <utility>
#include <vector>

namespace stampede::common {

class Histogram {
public:
  static constexpr int64_t kMaxTrackableUs = 60'000'000;
  static constexpr int kSubBucketCount = 2048;
  static constexpr int kBucketCount = 16;
  static constexpr size_t kCounterCount = (kBucketCount + 1) * (kSubBucketCount / 2); // 17,408
  // Identifies the layout on the wire; histograms of differing layouts never merge.
  static constexpr uint32_t kLayoutId = 1;

  Histogram();

  // Values below 0 count as 0; values above kMaxTrackableUs go to overflow() but still
  // update max, sum and count.
  // The first value that needs the counters allocates them (std::bad_alloc then, only).
  void record(int64_t value_us);
  // Adds the counters between other's min and max only, and reset() clears those between its
  // own: no counter outside them is ever non-zero.
  void merge(const Histogram& other);
  void reset() noexcept;

  uint64_t count() const { return count_; }
  uint64_t overflow() const { return overflow_; }
  int64_t minUs() const { return count_ ? min_us_ : 0; }
  int64_t maxUs() const { return count_ ? max_us_ : 0; }
  double meanUs() const { return count_ ? double(sum_us_) / double(count_) : 0.0; }
  int64_t sumUs() const { return sum_us_; }
  // percentile in [0, 100]; 0 when empty. Within 0.1 % of the exact sample percentile
  // (nearest-rank definition), clamped to [min, max].
  int64_t percentileUs(double percentile) const;

  // Wire form (DESIGN.md "Statistics"): counters with runs of empty buckets written as a
  // negative run length, trimmed after the last non-empty bucket.
  std::vector<int64_t> encodeCounts() const;
  // Rebuilds from the wire form plus the exact fields; returns false (and leaves *this
  // empty) when the counts are malformed or do not add up to `count`.
  bool decode(uint32_t layout_id, std::span<const int64_t> counts, uint64_t count,
              uint64_t overflow, int64_t min_us, int64_t max_us, int64_t sum_us);

  // What decode() accepts, checked without touching anything (hostile input is expected).
  static bool validEncoded(uint32_t layout_id, std::span<const int64_t> counts, uint64_t count,
                           uint64_t overflow, int64_t min_us, int64_t max_us, int64_t sum_us);
  // Adds a wire-form histogram that validEncoded() accepted. Costs as many steps as the wire
  // form has entries, not 17,408: the master merges thousands of these a second.
  void addEncoded(std::span<const int64_t> counts, uint64_t count, uint64_t overflow,
                  int64_t min_us, int64_t max_us, int64_t sum_us);

  // Index of the counter that holds value_us (exposed for tests).
  static size_t indexOf(int64_t value_us) noexcept;
  // The largest value that maps to counter `index`.
  static int64_t highestEquivalent(size_t index) noexcept;
  static int64_t lowestEquivalent(size_t index) noexcept;

  // Whether the counters are allocated (for tests of the memory they cost).
  bool allocated() const { return !counts_.empty(); }

private:
  void allocate();
  // The counters of the exact min and max: every non-zero counter lies between them.
  size_t firstUsed() const noexcept;
  size_t lastUsed() const noexcept;

  // kCounterCount counters zeroed by calloc, or none (all zero): a fresh block comes zeroed
  // from the kernel, so only the pages that values reach become resident.
  class Counters {
  public:
    Counters() = default;
    Counters(const Counters& other);
    Counters& operator=(const Counters& other);
    Counters(Counters&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {}
    Counters& operator=(Counters&& other) noexcept;
    ~Counters() { std::free(data_); }
    void allocate(); // std::bad_alloc when out of memory
    bool empty() const { return data_ == nullptr; }
    size_t size() const { return data_ ? kCounterCount : 0; }
    uint64_t* data() { return data_; }
    uint64_t& operator[](size_t i) { return data_[i]; }
    uint64_t operator[](size_t i) const { return data_[i]; }

  private:
    uint64_t* data_ = nullptr;
  };

  Counters counts_;
  uint64_t count_ = 0;
  uint64_t overflow_ = 0;
  int64_t min_us_ = 0;
  int64_t max_us_ = 0;
  int64_t sum_us_ = 0;
};

} // namespace stampede::common
