#include "master/divergence.h"

#include "common/histogram.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace stampede::master {

size_t Divergence::bucketOf(int64_t value_us) {
  if (value_us <= 1)
    return 0;
  const auto b = size_t(std::ceil(std::log2(double(value_us)) * 16.0 - 1e-9));
  return std::min(b, kBuckets - 1);
}

double Divergence::upperUs(size_t bucket) {
  return std::exp2(double(bucket) / 16.0);
}

double Divergence::percentileUs(const Buckets& b, double percentile) {
  uint64_t total = 0;
  for (auto n : b)
    total += n;
  if (total == 0)
    return 0;
  const auto rank = uint64_t(std::max(1.0, std::ceil(percentile / 100.0 * double(total))));
  uint64_t seen = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    seen += b[i];
    if (seen >= rank)
      return upperUs(i);
  }
  return upperUs(b.size() - 1);
}

// The wire's run-length counters, each put in the log bucket of its highest value.
void Divergence::addWire(const wire::Histogram& h, Buckets& into, uint64_t* samples) {
  size_t index = 0;
  for (int64_t entry : h.counts()) {
    if (entry < 0) {
      index += size_t(-entry);
      continue;
    }
    into[bucketOf(common::Histogram::highestEquivalent(index))] += uint64_t(entry);
    if (samples)
      *samples += uint64_t(entry);
    ++index;
  }
  into[kBuckets - 1] += h.overflow();
  if (samples)
    *samples += h.overflow();
}

void Divergence::add(uint32_t worker, const wire::Stats& delta) {
  auto& w = workers_[worker];
  for (const auto& step : delta.steps()) {
    w.requests += step.requests();
    w.errors += step.errors();
    if (step.has_latency())
      addWire(step.latency(), w.latency, nullptr);
    if (step.has_schedule_lag())
      addWire(step.schedule_lag(), w.lag, &w.lag_samples);
  }
}

std::map<uint32_t, Divergence::Figures> Divergence::judge() const {
  std::map<uint32_t, Figures> out;
  Worker all;
  for (const auto& [id, w] : workers_) {
    all.requests += w.requests;
    all.errors += w.errors;
    all.lag_samples += w.lag_samples;
    for (size_t i = 0; i < kBuckets; ++i) {
      all.latency[i] += w.latency[i];
      all.lag[i] += w.lag[i];
    }
  }
  for (const auto& [id, w] : workers_) {
    Figures f;
    f.requests = w.requests;
    f.errors = w.errors;
    f.error_rate = w.requests ? double(w.errors) / double(w.requests) : 0.0;
    f.p99_ms = percentileUs(w.latency, 99) / 1000.0;
    if (w.lag_samples)
      f.schedule_lag_p99_ms = percentileUs(w.lag, 99) / 1000.0;
    // The rest of the cluster: everyone merged, less this worker.
    Worker rest;
    rest.requests = all.requests - w.requests;
    rest.errors = all.errors - w.errors;
    rest.lag_samples = all.lag_samples - w.lag_samples;
    for (size_t i = 0; i < kBuckets; ++i) {
      rest.latency[i] = all.latency[i] - w.latency[i];
      rest.lag[i] = all.lag[i] - w.lag[i];
    }
    if (w.requests >= kMinRequests && rest.requests >= kMinRequests) {
      std::vector<std::string> why;
      auto worse = [](double mine, double theirs, double margin) {
        return mine > kRatio * theirs && mine - theirs > margin;
      };
      const double rest_p99 = percentileUs(rest.latency, 99) / 1000.0;
      if (worse(f.p99_ms, rest_p99, kLatencyMarginMs))
        why.push_back(
            fmt::format("latency p99 {:.1f} ms vs {:.1f} ms for the rest", f.p99_ms, rest_p99));
      const double rest_rate = double(rest.errors) / double(rest.requests);
      if (worse(f.error_rate, rest_rate, kErrorRateMargin))
        why.push_back(fmt::format("error rate {:.1f}% vs {:.1f}% for the rest", 100 * f.error_rate,
                                  100 * rest_rate));
      if (f.schedule_lag_p99_ms && rest.lag_samples >= kMinRequests) {
        const double rest_lag = percentileUs(rest.lag, 99) / 1000.0;
        if (worse(*f.schedule_lag_p99_ms, rest_lag, kLatencyMarginMs))
          why.push_back(fmt::format("schedule lag p99 {:.1f} ms vs {:.1f} ms for the rest",
                                    *f.schedule_lag_p99_ms, rest_lag));
      }
      for (size_t i = 0; i < why.size(); ++i)
        f.divergent += (i ? "; " : "") + why[i];
    }
    out[id] = std::move(f);
  }
  return out;
}

std::string Divergence::liveNote() const {
  std::string note;
  for (const auto& [id, f] : judge())
    if (!f.divergent.empty())
      note += fmt::format("  DIVERGENT worker {}: {}", id, f.divergent);
  return note;
}

void addDivergence(const Divergence& divergence, std::vector<WorkerResult>& workers) {
  const auto judged = divergence.judge();
  for (auto& w : workers) {
    auto it = judged.find(w.id);
    if (it == judged.end())
      continue;
    w.p99_ms = it->second.p99_ms;
    w.error_rate = it->second.error_rate;
    w.schedule_lag_p99_ms = it->second.schedule_lag_p99_ms;
    w.divergent = it->second.divergent;
  }
}

} // namespace stampede::master
