#include "master/interval_rows.h"

#include "common/protocol.h"

#include <algorithm>
#include <cmath>

namespace stampede::master {
namespace {

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

} // namespace

IntervalRows::IntervalRows(common::SteadyTime t0, std::chrono::nanoseconds grace)
    : t0_(t0), grace_(grace) {}

int64_t IntervalRows::secondOf(common::SteadyTime t) const {
  if (t <= t0_)
    return 1;
  return static_cast<int64_t>(std::floor(seconds(t - t0_))) + 1;
}

IntervalRows::Held& IntervalRows::heldFor(int64_t second, bool late) {
  auto& rows = late ? late_ : held_;
  auto [it, added] = rows.try_emplace(second);
  if (added) {
    it->second.row.second = second;
    it->second.row.elapsed_s = double(second);
    it->second.row.late = late;
  }
  return it->second;
}

void IntervalRows::add(uint32_t worker, common::SteadyTime at, const wire::Stats& delta) {
  auto [pace, first] = paces_.try_emplace(worker);
  const common::SteadyTime from = first ? t0_ : pace->second.last_at;
  common::SteadyTime middle = at;
  if (at > from)
    middle =
        from + std::min<std::chrono::steady_clock::duration>(at - from, common::kStatsInterval) / 2;
  const int64_t second = secondOf(middle);
  Held& held = heldFor(second, second <= written_through_);
  IntervalRow& row = held.row;
  uint64_t requests = 0;
  for (const auto& step : delta.steps()) {
    requests += step.requests();
    row.errors += step.errors();
    row.bytes_in += step.bytes_in();
    row.bytes_out += step.bytes_out();
    row.dropped += step.dropped();
    if (step.has_latency())
      common::addHistogramFromWire(step.latency(), row.latency_us);
    if (step.has_service())
      common::addHistogramFromWire(step.service(), row.service_us);
    if (step.has_schedule_lag())
      common::addHistogramFromWire(step.schedule_lag(), row.schedule_lag_us);
  }
  row.requests += requests;
  held.users[worker] = delta.active_users();
  pace->second.last_span_s = at > from ? seconds(at - from) : 0;
  pace->second.last_at = std::max(at, from);
  pace->second.last_requests = requests;
  last_cut_ = last_cut_ ? std::max(*last_cut_, at) : at;
}

IntervalRow IntervalRows::release(int64_t second) {
  auto it = held_.find(second);
  if (it == held_.end()) {
    IntervalRow empty;
    empty.second = second;
    empty.elapsed_s = double(second);
    return empty;
  }
  IntervalRow row = std::move(it->second.row);
  for (const auto& [worker, users] : it->second.users)
    row.users += users;
  held_.erase(it);
  return row;
}

std::vector<IntervalRow> IntervalRows::take(common::SteadyTime now,
                                            const std::vector<uint32_t>& running) {
  std::vector<IntervalRow> rows;
  const int64_t ended = secondOf(now) - 1; // rows whose end has passed
  int64_t due = now - grace_ > t0_ ? secondOf(now - grace_) - 1 : 0;
  // A row is complete once every running worker has cut a delta at or after its end: any
  // later delta starts after it.
  int64_t reported = ended;
  for (uint32_t worker : running) {
    auto it = paces_.find(worker);
    reported = std::min(reported, it == paces_.end() ? 0 : secondOf(it->second.last_at) - 1);
  }
  due = std::min(ended, std::max(due, reported));
  for (int64_t second = written_through_ + 1; second <= due; ++second)
    rows.push_back(release(second));
  written_through_ = std::max(written_through_, due);
  flushLate(rows);
  return rows;
}

void IntervalRows::flushLate(std::vector<IntervalRow>& rows) {
  for (auto& [second, held] : late_) {
    for (const auto& [worker, users] : held.users)
      held.row.users += users;
    rows.push_back(std::move(held.row));
  }
  late_.clear();
}

std::vector<IntervalRow> IntervalRows::finish() {
  std::vector<IntervalRow> rows;
  if (!last_cut_)
    return rows;
  const double end_s = std::max(0.0, seconds(*last_cut_ - t0_));
  int64_t last = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(end_s)));
  if (!held_.empty())
    last = std::max(last, held_.rbegin()->first);
  for (int64_t second = written_through_ + 1; second <= last; ++second)
    rows.push_back(release(second));
  if (!rows.empty()) {
    IntervalRow& tail = rows.back();
    tail.elapsed_s = std::max(end_s, double(tail.second - 1));
    tail.length_s = tail.elapsed_s - double(tail.second - 1);
    // A stub of a second is noise as a rate of its own: it joins the row before it.
    if (tail.length_s < 0.25 && rows.size() >= 2) {
      IntervalRow& before = rows[rows.size() - 2];
      before.requests += tail.requests;
      before.errors += tail.errors;
      before.bytes_in += tail.bytes_in;
      before.bytes_out += tail.bytes_out;
      before.dropped += tail.dropped;
      before.latency_us.merge(tail.latency_us);
      before.service_us.merge(tail.service_us);
      before.schedule_lag_us.merge(tail.schedule_lag_us);
      before.users = tail.users;
      before.elapsed_s = tail.elapsed_s;
      before.length_s += tail.length_s;
      rows.pop_back();
    }
  }
  written_through_ = std::max(written_through_, last);
  flushLate(rows);
  return rows;
}

std::optional<IntervalRows::Pace> IntervalRows::pace(uint32_t worker) const {
  auto it = paces_.find(worker);
  if (it == paces_.end())
    return std::nullopt;
  return it->second;
}

} // namespace stampede::master
