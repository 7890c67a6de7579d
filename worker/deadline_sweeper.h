// Request timeouts for one client's sessions without a timer operation per request (the Beast
// and HTTP/2 engines): a session in flight holds a deadline, and one timer ticks while any
// session is in flight, calling expire() on those past their deadline. The timer stops when
// nothing is in flight, so that an idle io_context runs out of work. Deadlines are kept side by
// side, not in the sessions: a tick over thousands of sessions reads a few cache lines. A tick
// comes every tenth of the shortest timeout seen, 1 to 100 ms: a timeout fires up to that late.
// `Session` has `void expire() noexcept` and a `size_t slot_` this class may set (a friend).
// Used on its io_context's thread only.
#pragma once

#include "common/asio.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <vector>

namespace stampede::worker {

template <class Session>
class DeadlineSweeper : public std::enable_shared_from_this<DeadlineSweeper<Session>> {
public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kMinPeriod{1};
  static constexpr std::chrono::milliseconds kMaxPeriod{100};

  DeadlineSweeper(asio::io_context& io, std::chrono::microseconds timeout) : timer_(io) {
    setPeriod(timeout);
  }
  // Returns the session's slot.
  size_t add(Session* session) {
    sessions_.push_back(session);
    deadlines_.push_back(Clock::time_point::max());
    return sessions_.size() - 1;
  }
  void remove(size_t slot) {
    sessions_[slot] = sessions_.back();
    deadlines_[slot] = deadlines_.back();
    sessions_[slot]->slot_ = slot;
    sessions_.pop_back();
    deadlines_.pop_back();
  }
  // A request's deadline, or time_point::max() for none.
  void setDeadline(size_t slot, Clock::time_point deadline) { deadlines_[slot] = deadline; }
  // A request went in flight, with this timeout.
  void begin(std::chrono::microseconds timeout) {
    ++in_flight_;
    if (timeout < basis_) {
      setPeriod(timeout);
      if (armed_)
        arm(); // sooner than the tick already armed
    }
    if (!armed_)
      arm();
  }
  // A request left flight.
  void end() {
    if (--in_flight_ == 0 && armed_) {
      armed_ = false;
      timer_.cancel();
    }
  }

private:
  void setPeriod(std::chrono::microseconds timeout) {
    basis_ = timeout;
    period_ = std::clamp<Clock::duration>(timeout / 10, kMinPeriod, kMaxPeriod);
  }
  void arm() {
    armed_ = true;
    timer_.expires_after(period_);
    // A cancelled wait (stopped or re-armed) does nothing: a newer wait, if any, took over.
    timer_.async_wait([weak = this->weak_from_this()](const boost::system::error_code& ec) {
      if (ec)
        return;
      if (auto self = weak.lock())
        self->tick();
    });
  }
  void tick() {
    const auto now = Clock::now();
    for (size_t slot = 0; slot < deadlines_.size(); ++slot) {
      if (deadlines_[slot] <= now) {
        deadlines_[slot] = Clock::time_point::max();
        sessions_[slot]->expire();
      }
    }
    if (in_flight_ > 0)
      arm();
    else
      armed_ = false;
  }

  asio::steady_timer timer_;
  std::vector<Session*> sessions_;
  std::vector<Clock::time_point> deadlines_; // by slot, as sessions_
  int in_flight_ = 0;
  bool armed_ = false;
  std::chrono::microseconds basis_{0};
  Clock::duration period_{};
};

} // namespace stampede::worker
