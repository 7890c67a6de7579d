// A load thread's arrivals in a capacity run: the open model's schedule, one rate per probe
// (Engine::setRate). Probe p's arrival k is due at from_p + (k + phase) / rate_p, and this
// thread owns k = index, index + threads...; between probes nothing starts. Connections and
// the pool of idle users carry over from one probe to the next.
#include "worker/load_thread.h"

#include "common/protocol.h"
#include "worker/set_rate.h"
#include "worker/virtual_user.h"

#include <algorithm>

namespace stampede::worker {

// See probeArrivals: how many late arrivals a thread starts in a row before it yields.
constexpr uint64_t kArrivalsBetweenYields = 64;

bool WorkerThread::launchArrival(common::SteadyTime at, uint64_t& next_vu) {
  Engine& e = engine_;
  Engine::Group& group = *e.groups_[0]; // a capacity run has one
  ArrivalPool& pool = *pools_[0];
  const common::Flow& flow = e.pickFlow(group, rng_);
  if (pool.in_flight >= pool.cap) {
    // Never queued: a late start would hide the wait from the latency figures.
    recordDropped(flow.first_request_stats_index);
    return true;
  }
  if (!e.takeIteration(group))
    return false;
  VirtualUser* user;
  if (!pool.idle.empty()) {
    user = pool.idle.back();
    pool.idle.pop_back();
  } else {
    const uint64_t step = e.threads_.size();
    const uint64_t vu = group.first_vu + uint64_t(index_) + step * next_vu++;
    users_.push_back(std::make_unique<VirtualUser>(*this, vu, 0));
    user = users_.back().get();
  }
  ++pool.in_flight;
  asio::co_spawn(io_, user->arrival(flow, at),
                 [this](std::exception_ptr error) { onEscape(error); });
  return true;
}

asio::awaitable<void> WorkerThread::probeArrivals() {
  Engine& e = engine_;
  const uint64_t step = e.threads_.size();
  const double phase = double(e.options_.worker_index % std::max(1u, e.options_.worker_count)) /
                       double(std::max(1u, e.options_.worker_count));
  std::vector<Engine::RateSegment> segments;
  size_t current = 0;            // the probe this thread is on
  uint64_t k = uint64_t(index_); // its next arrival in that probe
  uint64_t next_vu = 0;
  uint64_t behind = 0; // arrivals started in a row without waiting for one
  // Until `t`, or until woken early by a new probe (setRate), a halt or the end.
  boost::system::error_code ec;
  auto waitUntil = [this, &ec](common::SteadyTime t) {
    pools_[0]->timer.expires_at(std::chrono::steady_clock::time_point(t));
    return pools_[0]->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  };
  auto stopped = [&] { return e.stopping() || e.data_stopped_.load(std::memory_order_acquire); };
  while (!stopped()) {
    if (e.rate_segment_count_.load(std::memory_order_acquire) != segments.size()) {
      std::lock_guard lock(e.rate_mutex_);
      segments = e.rate_segments_;
    }
    if (current >= segments.size()) {
      // Between probes: sleep until the next setRate (which wakes us) or the end.
      co_await waitUntil(e.end_);
      if (e.clock_.now() >= e.end_)
        break;
      continue;
    }
    const auto& probe = segments[current];
    // Past the probe's end (or a rate that is no number, from a broken master): the next probe.
    const double after_s = (double(k) + phase) / probe.rate;
    const double length_s = std::chrono::duration<double>(probe.to - probe.from).count();
    const common::SteadyTime at =
        probe.rate > 0 && after_s < length_s
            ? probe.from + std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::duration<double>(after_s))
            : probe.to;
    if (at >= probe.to) {
      ++current;
      k = uint64_t(index_);
      continue;
    }
    if (at >= e.end_)
      break;
    if (e.clock_.now() < at) {
      co_await waitUntil(at); // woken early by a new probe: look again
      behind = 0;
      continue;
    }
    if (!launchArrival(at, next_vu))
      break;
    k += step;
    // Far behind the schedule (a rate the thread cannot keep): let the responses, the halt
    // and the next probe in now and then instead of only starting (or dropping) arrivals.
    if (++behind % kArrivalsBetweenYields == 0)
      co_await asio::post(io_, asio::use_awaitable);
  }
}

void applySetRate(Engine& engine, const wire::SetRate& set_rate, int64_t clock_offset_ns) {
  engine.setRate(set_rate.rate(),
                 common::fromSteadyNs(set_rate.start_master_ns() + clock_offset_ns),
                 common::fromSteadyNs(set_rate.end_master_ns() + clock_offset_ns));
}

} // namespace stampede::worker
