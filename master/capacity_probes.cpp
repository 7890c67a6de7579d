#include "master/capacity_probes.h"

#include "common/protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace stampede::master {
namespace {

using namespace std::chrono_literals;
using common::SteadyTime;

// A probe starts this far ahead at least, plus kRoundTrips of the slowest worker's round trip
// (as the start barrier), rounded up to the next whole second from t0.
constexpr auto kProbeMargin = 100ms;
constexpr int kRoundTrips = 4;
// A probe whose arrivals went out at under this fraction of the rate asked, the target being
// fast, measured the generators.
constexpr double kAchievedFloor = 0.8;
// A worker whose load threads were on the CPU this much of the judged time could not have
// started requests any faster, nor read the answers on time.
constexpr double kBusyLimit = 0.9;

PercentilesMs percentiles(const common::Histogram& h) {
  auto ms = [](int64_t us) { return double(us) / 1000.0; };
  return {ms(h.percentileUs(50)), ms(h.percentileUs(90)), ms(h.percentileUs(99)), ms(h.maxUs())};
}

CapacitySearch::Options searchOptions(const common::CapacitySpec& spec) {
  CapacitySearch::Options o;
  o.start = spec.start;
  o.max = spec.max;
  o.resolution = spec.resolution;
  o.confirm = spec.confirm;
  return o;
}

double ms(std::chrono::microseconds d) {
  return double(d.count()) / 1000.0;
}

} // namespace

CapacityProbes::CapacityProbes(RunContext& run)
    : run_(run), spec_(*run.scenario.capacity), search_(searchOptions(spec_)),
      last_second_(run.joined.size(), 0) {}

void CapacityProbes::begin() {
  schedule(*search_.next(), run_.t0);
}

// Probe n at `rate`: its judged part begins on the first whole second from t0 (a stats cut)
// that leaves its warmup after the moment every worker can hear of it.
void CapacityProbes::schedule(double rate, SteadyTime now) {
  using std::chrono::microseconds;
  int64_t max_rtt_ns = 0;
  for (auto* link : run_.joined)
    max_rtt_ns = std::max(max_rtt_ns, link->rtt_ns);
  // The first probe starts with the run (Start carries the same margin).
  const auto earliest =
      now <= run_.t0 ? run_.t0
                     : now + kProbeMargin + std::chrono::nanoseconds(kRoundTrips * max_rtt_ns);
  const int64_t earliest_us =
      std::max<int64_t>(0, std::chrono::ceil<microseconds>(earliest - run_.t0).count());
  Probe p;
  p.judged_from_s = (earliest_us + spec_.warmup.count() + 999'999) / 1'000'000;
  p.start_us = p.judged_from_s * 1'000'000 - spec_.warmup.count();
  p.end_us = p.start_us + spec_.probe.count();
  p.end_s = (p.end_us + 999'999) / 1'000'000;
  p.book = common::StatsBook(run_.scenario.step_table.size());
  p.busy_sum.assign(run_.joined.size(), 0.0);
  p.busy_seconds.assign(run_.joined.size(), 0);
  auto& r = p.result;
  r.probe = uint32_t(probes_.size() + 1);
  r.rate_asked = rate;
  r.start_ms = double(p.start_us) / 1000.0;
  r.end_ms = double(p.end_us) / 1000.0;
  r.judged_from_ms = double(p.judged_from_s) * 1000.0;
  for (auto* link : run_.joined) {
    if (link->state != LinkState::Running)
      continue;
    wire::Envelope e;
    auto* s = e.mutable_set_rate();
    s->set_probe(r.probe);
    s->set_rate(rate * run_.plans[link->index].rate_share);
    s->set_start_master_ns(common::steadyNs(run_.t0 + microseconds(p.start_us)));
    s->set_end_master_ns(common::steadyNs(run_.t0 + microseconds(p.end_us)));
    run_.cluster.send(*link, e);
  }
  probes_.push_back(std::move(p));
  drain_until_.reset();
}

void CapacityProbes::onStats(const WorkerLink& link, SteadyTime cut, const wire::Stats& stats) {
  // Deltas are cut on whole seconds from t0: this one covers the second that ends at `cut`.
  const int64_t second = std::llround(seconds(cut - run_.t0));
  if (link.index < last_second_.size())
    last_second_[link.index] = std::max(last_second_[link.index], second);
  for (auto& p : probes_) {
    if (p.judged || second <= p.judged_from_s || second > p.end_s)
      continue;
    common::statsFromWire(stats, run_.scenario.step_table.size(), p.book);
    if (link.index < p.busy_sum.size()) {
      p.busy_sum[link.index] += stats.load_busy();
      ++p.busy_seconds[link.index];
    }
  }
}

void CapacityProbes::onError(const common::ErrorContext& error) {
  for (auto& p : probes_) {
    const auto from = run_.t0 + std::chrono::microseconds(p.start_us);
    const auto to = run_.t0 + std::chrono::seconds(p.end_s);
    if (error.at >= from && error.at < to && !p.result.first_error)
      p.result.first_error = error;
  }
}

// Every running worker has cut a delta at or after `second`; with none running, the run is
// over before the probe was: it is never judged on part of its figures.
bool CapacityProbes::reportedPast(int64_t second) const {
  bool running = false;
  for (auto* link : run_.joined) {
    if (link->state != LinkState::Running)
      continue;
    running = true;
    if (last_second_[link->index] < second)
      return false;
  }
  return running;
}

// Every running worker's last Stats says nothing of the probe is still in flight.
bool CapacityProbes::drained() const {
  for (auto* link : run_.joined)
    if (link->state == LinkState::Running && link->active_users > 0)
      return false;
  return true;
}

void CapacityProbes::judge(Probe& p) {
  p.judged = true;
  auto& r = p.result;
  const auto total = p.book.total();
  // The arrivals' time in the judged part (its last cut may run past the probe's end).
  const double judged_s = double(p.end_us - p.judged_from_s * 1'000'000) / 1e6;
  r.latency_ms = percentiles(total.latency_us);
  r.service_ms = percentiles(total.service_us);
  r.lag_ms = percentiles(total.schedule_lag_us);
  r.requests = total.requests;
  r.errors = total.errors;
  r.errors_by_kind = total.errors_by_kind;
  r.dropped = total.dropped;
  r.error_rate = total.requests > 0 ? double(total.errors) / double(total.requests) : 0.0;
  r.rate_achieved = double(total.schedule_lag_us.count()) / judged_s;
  const double slo_p99 = ms(spec_.slo_p99);
  const double max_lag = ms(spec_.max_lag);
  const bool target_fast = r.service_ms.p99 <= slo_p99 && r.error_rate <= spec_.slo_error_rate;
  size_t busiest = 0;
  for (size_t w = 0; w < p.busy_sum.size(); ++w) {
    const double busy = p.busy_seconds[w] > 0 ? p.busy_sum[w] / p.busy_seconds[w] : 0.0;
    if (busy > r.generator_busy) {
      r.generator_busy = busy;
      busiest = w;
    }
  }
  if (total.requests == 0 && total.dropped == 0) {
    r.verdict = ProbeVerdict::Inconclusive;
    r.reason = "no request completed in the judged part of the probe";
  } else if (r.lag_ms.p99 > max_lag) {
    r.verdict = ProbeVerdict::Inconclusive;
    r.reason = fmt::format("schedule lag p99 {:.1f} ms > {:g} ms: the load generators could not "
                           "keep the schedule",
                           r.lag_ms.p99, max_lag);
  } else if (r.generator_busy >= kBusyLimit) {
    r.verdict = ProbeVerdict::Inconclusive;
    r.reason = fmt::format("worker {}'s load threads were busy {:.0f} % of the time: the load "
                           "generators were saturated",
                           busiest, r.generator_busy * 100);
  } else if (r.dropped > 0 && target_fast) {
    r.verdict = ProbeVerdict::Inconclusive;
    r.reason = fmt::format("{} arrivals dropped by max_in_flight while the target answered in "
                           "p99 {:.1f} ms: the generators' cap, not the target",
                           r.dropped, r.service_ms.p99);
  } else if (r.latency_ms.p99 > slo_p99) {
    r.verdict = ProbeVerdict::Fail;
    r.reason = fmt::format("p99 {:.1f} ms > {:g} ms", r.latency_ms.p99, slo_p99);
  } else if (r.error_rate > spec_.slo_error_rate) {
    r.verdict = ProbeVerdict::Fail;
    r.reason =
        fmt::format("error rate {:.3g} % > {:g} %", r.error_rate * 100, spec_.slo_error_rate * 100);
  } else if (r.dropped > 0) {
    r.verdict = ProbeVerdict::Fail;
    r.reason =
        fmt::format("{} arrivals dropped: the target held max_in_flight requests", r.dropped);
  } else if (r.rate_achieved < kAchievedFloor * r.rate_asked) {
    r.verdict = ProbeVerdict::Inconclusive;
    r.reason = fmt::format("{:.0f}/s achieved of {:g}/s asked while the target was fast: the "
                           "generators fell behind",
                           r.rate_achieved, r.rate_asked);
  } else {
    r.verdict = ProbeVerdict::Pass;
    r.reason =
        fmt::format("p99 {:.1f} ms <= {:g} ms, error rate {:.3g} % <= {:g} %", r.latency_ms.p99,
                    slo_p99, r.error_rate * 100, spec_.slo_error_rate * 100);
  }
  p.book = common::StatsBook(0); // the figures are kept; the histograms are not needed again
  if (!run_.cli.quiet)
    fmt::print("\nprobe {}: {:g}/s asked, {:.0f}/s achieved, p50 {:.2f} ms, p99 {:.2f} ms, "
               "errors {:.3g} %: {} ({})\n",
               r.probe, r.rate_asked, r.rate_achieved, r.latency_ms.p50, r.latency_ms.p99,
               r.error_rate * 100, probeVerdictName(r.verdict), r.reason);
}

void CapacityProbes::poll(SteadyTime now) {
  if (ended_ || probes_.empty())
    return;
  Probe& last = probes_.back();
  if (!last.judged) {
    if (!reportedPast(last.end_s))
      return;
    judge(last);
    const auto next = search_.record(last.result.verdict);
    if (!next) {
      finish();
      return;
    }
    if (last.result.verdict == ProbeVerdict::Fail)
      drain_until_ = run_.t0 + std::chrono::seconds(last.end_s) + run_.scenario.http.timeout + 1s;
    else
      schedule(*next, now);
    return;
  }
  // After a failing probe: the next one starts when its requests have drained.
  if (drain_until_ && (now >= *drain_until_ || (reportedPast(last.end_s + 1) && drained())))
    schedule(*search_.next(), now);
}

void CapacityProbes::finish() {
  ended_ = true;
  run_.end_at = std::min(run_.end_at, run_.clock.now()); // the run loop sends Stop
  const auto result = this->result(false);
  // Even with --quiet: this is the run's answer, as the summary is.
  const ProbeResult* best = nullptr;
  const ProbeResult* failed = nullptr;
  const ProbeResult* limited = nullptr;
  for (const auto& p : probes_) {
    const auto& r = p.result;
    if (r.verdict == ProbeVerdict::Pass && result.max_passing_rate == r.rate_asked)
      best = &r;
    if (r.verdict == ProbeVerdict::Fail && result.first_failing_rate == r.rate_asked && !failed)
      failed = &r;
    if (r.verdict == ProbeVerdict::Inconclusive)
      limited = &r;
  }
  std::string line;
  if (best)
    line = fmt::format("capacity: {:g}/s (p99 {:.1f} ms, {:.3g} % errors)", best->rate_asked,
                       best->latency_ms.p99, best->error_rate * 100);
  else
    line = "capacity: none found";
  if (result.limited_by == LimitedBy::Generators && limited)
    line += fmt::format("; limited by the load generators at {:g}/s: {}; an estimated {} "
                        "workers would be needed",
                        limited->rate_asked, limited->reason,
                        result.estimated_workers_needed.value_or(0));
  else if (result.limited_by == LimitedBy::Max)
    line += fmt::format("; the max rate {:g}/s was reached still passing", spec_.max);
  else if (failed)
    line += fmt::format("; {} {:g}/s failed: {}", best ? "next rate" : "even the start",
                        failed->rate_asked, failed->reason);
  fmt::print("\n{}\n", line);
}

uint32_t CapacityProbes::probeOfSecond(int64_t second) const {
  for (const auto& p : probes_)
    if (second > p.start_us / 1'000'000 && second <= p.end_s)
      return p.result.probe;
  return 0;
}

CapacityResult CapacityProbes::result(bool halted) const {
  CapacityResult out;
  out.spec = spec_;
  for (const auto& p : probes_)
    if (p.judged)
      out.probes.push_back(p.result);
  out.max_passing_rate = search_.maxPassing();
  out.first_failing_rate = search_.firstFailing();
  if (!halted && search_.done()) {
    out.limited_by = search_.limitedBy();
    out.exit_code = search_.exitCode();
  }
  if (out.limited_by == LimitedBy::Generators && !out.probes.empty()) {
    // To hold the rate where the generators gave out, at the rate per worker they last held.
    const double wanted = out.probes.back().rate_asked;
    const double held = out.max_passing_rate.value_or(out.probes.back().rate_achieved);
    const double n = double(run_.joined.size());
    uint64_t needed = held > 0 ? uint64_t(std::ceil(n * wanted / held)) : uint64_t(2 * n);
    out.estimated_workers_needed = std::max<uint64_t>(needed, uint64_t(n) + 1);
  }
  return out;
}

} // namespace stampede::master
