#include "common/seq_ranges.h"

#include <algorithm>

namespace stampede::common {

uint64_t SeqRanges::countIn(uint64_t first, uint64_t last) const {
  uint64_t n = 0;
  // The run that may start before `first` and reach into it, then every run starting inside.
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin())
    --it;
  for (; it != runs_.end() && it->first <= last; ++it) {
    const uint64_t from = std::max(first, it->first);
    const uint64_t to = std::min(last, it->second);
    if (from <= to)
      n += to - from + 1;
  }
  return n;
}

std::optional<uint64_t> SeqRanges::firstIn(uint64_t first, uint64_t last) const {
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin() && std::prev(it)->second >= first)
    return first;
  if (it != runs_.end() && it->first <= last)
    return it->first;
  return std::nullopt;
}

std::optional<std::pair<uint64_t, uint64_t>> SeqRanges::firstGap(uint64_t first,
                                                                 uint64_t last) const {
  uint64_t from = first;
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin() && std::prev(it)->second >= first) {
    if (std::prev(it)->second >= last)
      return std::nullopt;
    from = std::prev(it)->second + 1;
  }
  // `it` is the first run starting after `from`, if any: the gap ends before it.
  const uint64_t to = it != runs_.end() && it->first <= last ? it->first - 1 : last;
  return std::make_pair(from, to);
}

bool SeqRanges::contains(uint64_t seq) const {
  return countIn(seq, seq) == 1;
}

uint64_t SeqRanges::add(uint64_t first, uint64_t last) {
  if (first > last)
    return 0;
  const uint64_t already = countIn(first, last);
  // Merge with every run that overlaps [first, last] or touches it.
  uint64_t new_first = first;
  uint64_t new_last = last;
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin()) {
    auto before = std::prev(it);
    if (before->second >= first || before->second + 1 == first)
      it = before;
  }
  while (it != runs_.end() && (last == UINT64_MAX || it->first <= last + 1)) {
    new_first = std::min(new_first, it->first);
    new_last = std::max(new_last, it->second);
    size_ -= it->second - it->first + 1;
    it = runs_.erase(it);
  }
  runs_.emplace(new_first, new_last);
  size_ += new_last - new_first + 1;
  return already;
}

} // namespace stampede::common
