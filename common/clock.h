// Time for logic that must be testable: code takes a Clock& and never calls now() itself.
// Any thread may call now(); FakeClock is for single-threaded tests.
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

class FakeClock final : public Clock {
public:
  SteadyTime now() const override { return now_; }
  void advance(std::chrono::nanoseconds by) { now_ += by; }

private:
  SteadyTime now_{std::chrono::seconds(1000)};
};

// Microseconds between two stamps, clamped at zero: histogram values are never negative.
inline int64_t microsBetween(SteadyTime from, SteadyTime to) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(to - from).count();
  return us < 0 ? 0 : us;
}

} // namespace stampede::common
