// Time for logic that must be testable: code takes a Clock& and never calls now() itself.
// Any thread may call now(). Tests drive the engine with a clock of their own
// (tests/unit/engine_test.cpp).
#pragma once

#include <chrono>

namespace stampede::common {

using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
public:
  virtual ~Clock() = default;
  virtual SteadyTime now() const = 0;
};

class SteadyClock final : public Clock {
public:
  SteadyTime now() const override { return std::chrono::steady_clock::now(); }
};

// The steady clock run `skew` off, as another host's would, and drifting `drift_ppm` parts
// per million from its construction on (a fast or slow quartz): the worker's --test-clock-skew
// and --test-clock-drift, so that tests can check what the master's clock offsets correct, and
// that it re-measures them during a run.
class SkewedClock final : public Clock {
public:
  explicit SkewedClock(std::chrono::milliseconds skew, int64_t drift_ppm = 0)
      : skew_(skew), drift_ppm_(drift_ppm), origin_(std::chrono::steady_clock::now()) {}
  SteadyTime now() const override {
    const auto real = std::chrono::steady_clock::now();
    const auto since = std::chrono::duration_cast<std::chrono::nanoseconds>(real - origin_);
    return real + skew_ + std::chrono::nanoseconds(since.count() / 1'000'000 * drift_ppm_);
  }

private:
  std::chrono::milliseconds skew_;
  int64_t drift_ppm_;
  SteadyTime origin_;
};

// Microseconds between two stamps, clamped at zero: histogram values are never negative.
inline int64_t microsBetween(SteadyTime from, SteadyTime to) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return us < 0 ? 0 : us;
}

} // namespace stampede::common
