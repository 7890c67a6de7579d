// A set of message sequence numbers kept as sorted, disjoint runs [first, last]: what a queue's
// producers had confirmed, or its consumers took, of one producer's sequence (issue 17, loss
// and duplicates on queues). Consecutive numbers cost one run, so a producer's whole sequence
// seen in order is one entry. Not thread-safe: one owner at a time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace stampede::common {

class SeqRanges {
public:
  // Adds [first, last] (first <= last); returns how many of them were in the set already.
  uint64_t add(uint64_t first, uint64_t last);
  uint64_t add(uint64_t seq) { return add(seq, seq); }
  bool contains(uint64_t seq) const;
  // How many of [first, last] are in the set.
  uint64_t countIn(uint64_t first, uint64_t last) const;
  // The first number of [first, last] in the set, and the first run of [first, last] missing
  // from it; nullopt when there is none.
  std::optional<uint64_t> firstIn(uint64_t first, uint64_t last) const;
  std::optional<std::pair<uint64_t, uint64_t>> firstGap(uint64_t first, uint64_t last) const;
  uint64_t size() const { return size_; }
  bool empty() const { return runs_.empty(); }
  void clear() {
    runs_.clear();
    size_ = 0;
  }
  // first -> last, ascending, disjoint and not adjacent.
  const std::map<uint64_t, uint64_t>& runs() const { return runs_; }

private:
  std::map<uint64_t, uint64_t> runs_;
  uint64_t size_ = 0;
};

} // namespace stampede::common
