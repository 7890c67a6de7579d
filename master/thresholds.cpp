#include "master/thresholds.h"

#include "common/protocol.h"

#include <cmath>

namespace stampede::master {

using common::Threshold;

size_t ThresholdJudge::windowSeconds(std::chrono::microseconds window) {
  if (window.count() <= 0)
    return 0;
  return static_cast<size_t>(std::ceil(double(window.count()) / 1e6));
}

ThresholdJudge::ThresholdJudge(const common::Scenario& scenario) : scenario_(scenario) {
  for (const auto& t : scenario.halt.thresholds)
    scopeFor(t.step, windowSeconds(t.window));
  if (scenario.halt.on_error == common::HaltSpec::OnError::Rate)
    scopeFor("", windowSeconds(scenario.halt.error_window));
}

ThresholdJudge::Scope& ThresholdJudge::scopeFor(const std::string& step, size_t window_seconds) {
  for (auto& s : scopes_)
    if (s.step == step && s.window_seconds == window_seconds)
      return s;
  Scope scope;
  scope.step = step;
  scope.window_seconds = window_seconds;
  for (size_t i = 0; i < scenario_.step_table.size(); ++i)
    if (scenario_.step_table[i].name == step)
      scope.step_index = static_cast<int>(i);
  scopes_.push_back(std::move(scope));
  return scopes_.back();
}

const ThresholdJudge::Scope* ThresholdJudge::findScope(const std::string& step,
                                                       size_t window_seconds) const {
  for (const auto& s : scopes_)
    if (s.step == step && s.window_seconds == window_seconds)
      return &s;
  return nullptr;
}

void ThresholdJudge::addInterval(const common::StatsBook& interval, double seconds) {
  for (auto& scope : scopes_) {
    common::StepStats stats;
    if (scope.step_index >= 0 && size_t(scope.step_index) < interval.steps.size())
      stats = interval.steps[scope.step_index];
    else if (scope.step.empty())
      stats = interval.total();
    if (scope.window_seconds == 0) {
      scope.whole.merge(stats);
      scope.whole_seconds += seconds;
      continue;
    }
    Second second;
    second.requests = stats.requests;
    second.errors = stats.errors;
    second.dropped = stats.dropped;
    second.seconds = seconds;
    common::histogramToWire(stats.latency_us, second.latency);
    scope.ring.push_back(std::move(second));
    while (scope.ring.size() > scope.window_seconds)
      scope.ring.pop_front();
  }
}

ThresholdVerdict ThresholdJudge::judge(const Threshold& t, const Scope& scope) const {
  common::StepStats stats;
  double seconds = 0;
  if (scope.window_seconds == 0) {
    stats = scope.whole;
    seconds = scope.whole_seconds;
  } else {
    for (const auto& second : scope.ring) {
      stats.requests += second.requests;
      stats.errors += second.errors;
      stats.dropped += second.dropped;
      seconds += second.seconds;
      common::addHistogramFromWire(second.latency, stats.latency_us);
    }
  }
  ThresholdVerdict verdict;
  verdict.threshold = &t;
  const auto& h = stats.latency_us;
  switch (t.metric) {
  case Threshold::Metric::P50:
  case Threshold::Metric::P90:
  case Threshold::Metric::P95:
  case Threshold::Metric::P99:
  case Threshold::Metric::P999:
  case Threshold::Metric::Max:
  case Threshold::Metric::Mean: {
    if (h.count() == 0)
      return verdict;
    static constexpr double kPercentile[] = {50, 90, 95, 99, 99.9};
    double us = t.metric == Threshold::Metric::Max ? double(h.maxUs())
                : t.metric == Threshold::Metric::Mean
                    ? h.meanUs()
                    : double(h.percentileUs(kPercentile[static_cast<int>(t.metric)]));
    verdict.value = us / 1000.0;
    break;
  }
  case Threshold::Metric::ErrorRate:
    if (stats.requests == 0)
      return verdict;
    verdict.value = double(stats.errors) / double(stats.requests);
    break;
  case Threshold::Metric::Rps:
    if (seconds <= 0)
      return verdict;
    verdict.value = double(stats.requests) / seconds;
    break;
  case Threshold::Metric::Dropped:
    verdict.value = double(stats.dropped);
    break;
  }
  verdict.passed = t.holds(*verdict.value);
  return verdict;
}

std::optional<ThresholdVerdict> ThresholdJudge::abortBreach() const {
  for (const auto& t : scenario_.halt.thresholds) {
    if (!t.abort)
      continue;
    // rps is only meaningful once the run is over: a partial second would breach `rps > N`.
    if (t.metric == Threshold::Metric::Rps)
      continue;
    const Scope* scope = findScope(t.step, windowSeconds(t.window));
    if (!scope)
      continue;
    auto verdict = judge(t, *scope);
    if (!verdict.passed)
      return verdict;
  }
  return std::nullopt;
}

std::optional<double> ThresholdJudge::errorRateBreach() const {
  const auto& halt = scenario_.halt;
  if (halt.on_error != common::HaltSpec::OnError::Rate)
    return std::nullopt;
  const Scope* scope = findScope("", windowSeconds(halt.error_window));
  if (!scope)
    return std::nullopt;
  uint64_t requests = 0;
  uint64_t errors = 0;
  if (scope->window_seconds == 0) {
    requests = scope->whole.requests;
    errors = scope->whole.errors;
  } else {
    for (const auto& second : scope->ring) {
      requests += second.requests;
      errors += second.errors;
    }
  }
  if (requests == 0)
    return std::nullopt;
  double rate = double(errors) / double(requests);
  if (rate >= halt.error_rate)
    return rate;
  return std::nullopt;
}

std::vector<ThresholdVerdict> ThresholdJudge::judgeAll() const {
  std::vector<ThresholdVerdict> verdicts;
  for (const auto& t : scenario_.halt.thresholds) {
    const Scope* scope = findScope(t.step, windowSeconds(t.window));
    if (scope)
      verdicts.push_back(judge(t, *scope));
  }
  return verdicts;
}

} // namespace stampede::master
