// The send stamps of one load thread's latest requests, kept so that the worker can count,
// once the run is over, how many went out at or after a moment it learns only later: the
// first error's, which the master's Halt carries (README "report.json", halt). A fixed ring
// allocated up front; record() is one store. Written by its load thread only; read only after
// that thread has ended (Engine::join).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace stampede::worker {

class SendLog {
public:
  // 65,536 stamps (512 KiB): more than a second of sends at 50,000/s on one thread, where a
  // halt reaches every worker within milliseconds.
  static constexpr size_t kDefaultCapacity = size_t(1) << 16;

  explicit SendLog(size_t capacity = kDefaultCapacity)
      : stamps_(std::bit_ceil(std::max<size_t>(capacity, 1))), mask_(stamps_.size() - 1) {}

  // Stamps come in the order they were taken on one steady clock: never decreasing.
  void record(int64_t sent_ns) { stamps_[size_t(next_++ & mask_)] = sent_ns; }

  struct Count {
    uint64_t sent = 0;              // sends stamped at or after the moment
    std::optional<int64_t> last_ns; // the latest send of all; nullopt when nothing was sent
    bool complete = true;           // false: the ring overflowed, `sent` is a lower bound
  };
  Count countFrom(int64_t from_ns) const {
    Count c;
    if (next_ == 0)
      return c;
    c.last_ns = stamps_[size_t((next_ - 1) & mask_)];
    const uint64_t held = std::min<uint64_t>(next_, stamps_.size());
    while (c.sent < held && stamps_[size_t((next_ - 1 - c.sent) & mask_)] >= from_ns)
      ++c.sent;
    // Every stamp held is at or after the moment and older ones were overwritten: some of
    // those may have been too.
    c.complete = c.sent < held || next_ <= stamps_.size();
    return c;
  }
  uint64_t total() const { return next_; }
  void clear() { next_ = 0; }

private:
  std::vector<int64_t> stamps_;
  uint64_t mask_;
  uint64_t next_ = 0; // sends recorded
};

} // namespace stampede::worker
