#include "common/stats.h"

#include <algorithm>

namespace stampede::common {

void StepStats::merge(const StepStats& other) {
  requests += other.requests;
  errors += other.errors;
  cancelled += other.cancelled;
  dropped += other.dropped;
  bytes_in += other.bytes_in;
  bytes_out += other.bytes_out;
  for (const auto& [kind, n] : other.errors_by_kind)
    errors_by_kind[kind] += n;
  http2_responses += other.http2_responses;
  for (const auto& [name, n] : other.counters)
    counters[name] += n;
  latency_us.merge(other.latency_us);
  service_us.merge(other.service_us);
  schedule_lag_us.merge(other.schedule_lag_us);
  same_worker_us.merge(other.same_worker_us);
  cross_worker_us.merge(other.cross_worker_us);
  reconnect_us.merge(other.reconnect_us);
}

void StepStats::reset() {
  requests = 0;
  errors = 0;
  cancelled = 0;
  dropped = 0;
  bytes_in = 0;
  bytes_out = 0;
  http2_responses = 0;
  errors_by_kind.clear();
  counters.clear();
  latency_us.reset();
  service_us.reset();
  schedule_lag_us.reset();
  same_worker_us.reset();
  cross_worker_us.reset();
  reconnect_us.reset();
}

void StatsBook::merge(const StatsBook& other) {
  // A worker may report steps this book has not seen yet (books start empty on the master).
  if (other.steps.size() > steps.size())
    steps.resize(other.steps.size());
  for (size_t i = 0; i < other.steps.size(); ++i)
    steps[i].merge(other.steps[i]);
}

void StatsBook::reset() {
  // Keeps the steps (and their histograms' memory): a book is reset every interval.
  for (auto& step : steps)
    step.reset();
}

void StatsHandOff::collect(StatsBook& into) {
  StatsBook* full;
  {
    std::lock_guard lock(mutex_);
    full = filling_;
    filling_ = filling_ == &books_[0] ? &books_[1] : &books_[0]; // reset by the last collect
  }
  into.merge(*full);
  full->reset(); // only what was touched: see Histogram::reset
}

StepStats StatsBook::total() const {
  StepStats sum;
  for (const auto& step : steps)
    sum.merge(step);
  return sum;
}

} // namespace stampede::common
