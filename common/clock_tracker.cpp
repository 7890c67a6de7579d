#include "common/clock_tracker.h"

#include <algorithm>
#include <cmath>

namespace stampede::common {

int64_t ClockModel::offsetAt(int64_t master_ns) const {
  return offset_ns + int64_t(std::llround(drift * double(master_ns - ref_master_ns)));
}

int64_t ClockModel::errorAt(int64_t master_ns) const {
  if (error_ns < 0)
    return -1;
  const double away = std::fabs(double(master_ns - ref_master_ns));
  return error_ns + int64_t(std::llround(error_growth * away));
}

int64_t ClockModel::toMasterNs(int64_t worker_ns) const {
  // worker = master + offset_ns + drift * (master - ref), solved for master.
  const int64_t away = worker_ns - offset_ns - ref_master_ns;
  return ref_master_ns + int64_t(std::llround(double(away) / (1.0 + drift)));
}

void ClockTracker::seed(std::span<const ClockSample> handshake) {
  window_.clear();
  const ClockSample* best = nullptr;
  for (const ClockSample& s : handshake) {
    const int64_t rtt = s.master_recv_ns - s.master_send_ns;
    if (rtt >= 0 && (!best || rtt < best->master_recv_ns - best->master_send_ns))
      best = &s;
  }
  if (best)
    add(ClockExchange{best->master_send_ns, best->worker_ns, best->worker_ns,
                      best->master_recv_ns});
}

void ClockTracker::add(const ClockExchange& e) {
  // Unsigned arithmetic: the worker's figures are a peer's; wrap rather than overflow.
  const auto sub = [](int64_t a, int64_t b) { return int64_t(uint64_t(a) - uint64_t(b)); };
  const int64_t rtt = sub(sub(e.t4, e.t1), sub(e.t3, e.t2));
  if (rtt < 0 || sub(e.t4, e.t1) < 0)
    return;
  const int64_t offset = sub(e.t2, e.t1) / 2 + sub(e.t3, e.t4) / 2;
  window_.push_back({e.t1 + sub(e.t4, e.t1) / 2, offset, rtt});
  if (window_.size() > kWindow)
    window_.pop_front();
}

ClockModel ClockTracker::model() const {
  ClockModel m;
  if (window_.empty())
    return m;
  const auto best = [](auto from, auto to) {
    return std::min_element(from, to,
                            [](const Point& a, const Point& b) { return a.rtt_ns < b.rtt_ns; });
  };
  const auto middle = window_.begin() + ptrdiff_t(window_.size() / 2);
  const Point& newer = *best(middle, window_.end());
  m.offset_ns = newer.offset_ns;
  m.ref_master_ns = newer.at_ns;
  m.error_ns = newer.rtt_ns / 2;
  if (middle == window_.begin())
    return m;
  const Point& older = *best(window_.begin(), middle);
  const int64_t span = newer.at_ns - older.at_ns;
  if (span < kMinSlopeSpanNs)
    return m;
  m.drift = double(newer.offset_ns - older.offset_ns) / double(span);
  // A sample is right to within half its round trip when both clocks tick alike; one that
  // drifts also moves the worker's stamps by the drift over the round trip.
  const auto sample_error = [&](const Point& p) {
    return double(p.rtt_ns / 2) + std::fabs(m.drift) * double(p.rtt_ns);
  };
  m.error_ns = int64_t(std::ceil(sample_error(newer)));
  m.error_growth = (sample_error(older) + sample_error(newer)) / double(span);
  return m;
}

} // namespace stampede::common
