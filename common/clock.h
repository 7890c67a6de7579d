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

// The steady clock run `skew` off, as another host's would: the worker's --test-clock-skew, so
// that tests can check what the master's clock offsets correct.
class SkewedClock final : public Clock {
public:
  explicit SkewedClock(std::chrono::milliseconds skew) : skew_(skew) {}
  SteadyTime now() const override { return std::chrono::steady_clock::now() + skew_; }

private:
  std::chrono::milliseconds skew_;
};

// Microseconds between two stamps, clamped at zero: histogram values are never negative.
inline int64_t microsBetween(SteadyTime from, SteadyTime to) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return us < 0 ? 0 : us;
}

} // namespace stampede::common
