// A worker's clock against the master's, re-measured all through a run (issue 17: a soak lasts
// hours and quartz drifts tens of ppm): the master feeds it one NTP-style sample per heartbeat
// exchange and hands the worker the model it gives; the worker puts its messaging stamps on the
// master's clock with the model of the moment. Not thread-safe: ClockTracker belongs to the
// master's control thread; a ClockModel is a value.
#pragma once

#include "common/protocol.h"

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>

namespace stampede::common {

// worker clock minus master clock = offset_ns + drift * (t - ref_master_ns), t on the master's
// clock, right to within error_ns + error_growth * |t - ref_master_ns|.
struct ClockModel {
  int64_t offset_ns = 0;
  int64_t ref_master_ns = 0;
  double drift = 0;      // ns per ns; 0 until two samples a second apart give a slope
  int64_t error_ns = -1; // -1: no sample yet
  double error_growth = 0;

  int64_t offsetAt(int64_t master_ns) const;
  int64_t errorAt(int64_t master_ns) const;
  // A stamp of the worker's clock on the master's.
  int64_t toMasterNs(int64_t worker_ns) const;
};

// One exchange: the master sent at t1 (its clock), the worker received at t2 and answered at t3
// (its clock), the master received the answer at t4. A handshake Probe/Hello has t2 == t3.
struct ClockExchange {
  int64_t t1 = 0, t2 = 0, t3 = 0, t4 = 0;
};

// The worker's copy of its latest model: the control thread sets it from the master's
// heartbeats, load threads read it for every stamp. Any thread.
class SharedClockModel {
public:
  explicit SharedClockModel(ClockModel model) : model_(model) {}
  void set(const ClockModel& model) {
    std::lock_guard lock(mutex_);
    model_ = model;
  }
  ClockModel get() const {
    std::lock_guard lock(mutex_);
    return model_;
  }
  int64_t toMasterNs(int64_t worker_ns) const { return get().toMasterNs(worker_ns); }

private:
  mutable std::mutex mutex_;
  ClockModel model_;
};

class ClockTracker {
public:
  // The samples kept: 16 heartbeats, about 16 s of a run.
  static constexpr size_t kWindow = 16;
  // A slope needs its two samples at least this far apart (1 s): closer, the round trips'
  // noise would dominate it.
  static constexpr int64_t kMinSlopeSpanNs = 1'000'000'000;

  // Starts afresh from a handshake's burst of samples, taken within milliseconds: its
  // minimum-RTT one only, as one point in time. (Kept whole, a burst of quiet, short round
  // trips would fill the window and outbid every sample of a busy run for longer than the
  // drift allows.)
  void seed(std::span<const ClockSample> handshake);
  // Ignores an exchange whose round trip comes out negative (a forged or garbled one).
  void add(const ClockExchange& e);
  // Minimum-RTT filtered: in the older and the newer half of the window, the sample with the
  // smallest round trip (the least room for asymmetric delay; its offset is right to within
  // half of it). The newer one is the offset; the slope between the two is the drift, whose
  // own error (both halves' errors over their distance) makes the bound grow with time.
  ClockModel model() const;
  size_t samples() const { return window_.size(); }

private:
  struct Point {
    int64_t at_ns;     // the exchange's midpoint on the master's clock
    int64_t offset_ns; // worker minus master
    int64_t rtt_ns;
  };
  std::deque<Point> window_;
};

} // namespace stampede::common
