// The engine's timers (think pauses, ramp parking, open-model arrivals) run on the engine's
// Clock, as Nighthawk's TimeSource drives its timers: with the real steady clock they are
// asio steady timers in all but name (no virtual call); with any other clock (a test's),
// each load thread reads that clock, and its reactor re-checks the timers at least every
// millisecond, so that a clock that a test advances wakes them.
#pragma once

#include "common/asio.h"
#include "common/clock.h"

#include <chrono>

namespace stampede::worker {

struct EngineTimerClock {
  using duration = std::chrono::steady_clock::duration;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::steady_clock::time_point;
  static constexpr bool is_steady = true;

  static time_point now() noexcept {
    const common::Clock* clock = thread_clock;
    return clock ? clock->now() : std::chrono::steady_clock::now();
  }
  // The calling load thread's clock; nullptr: the steady clock. Set by WorkerThread::run.
  static inline thread_local const common::Clock* thread_clock = nullptr;
};

struct EngineWaitTraits {
  // The longest a load thread's reactor sleeps on an injected clock before it looks again.
  static constexpr std::chrono::milliseconds kInjectedPoll{1};

  static EngineTimerClock::duration to_wait_duration(const EngineTimerClock::duration& d) {
    if (EngineTimerClock::thread_clock && d > kInjectedPoll)
      return kInjectedPoll;
    return d;
  }
  static EngineTimerClock::duration to_wait_duration(const EngineTimerClock::time_point& t) {
    const auto now = EngineTimerClock::now();
    if (t <= now)
      return EngineTimerClock::duration::zero();
    return to_wait_duration(EngineTimerClock::duration(t - now));
  }
};

using EngineTimer = asio::basic_waitable_timer<EngineTimerClock, EngineWaitTraits>;

} // namespace stampede::worker
