#include "master/capacity_search.h"

#include "master/halt_policy.h"

#include <algorithm>
#include <iterator>

namespace stampede::master {

const char* probeVerdictName(ProbeVerdict v) {
  switch (v) {
  case ProbeVerdict::Pass:
    return "pass";
  case ProbeVerdict::Fail:
    return "fail";
  case ProbeVerdict::Inconclusive:
    return "inconclusive";
  }
  return "inconclusive";
}

const char* limitedByName(LimitedBy l) {
  switch (l) {
  case LimitedBy::Target:
    return "target";
  case LimitedBy::Generators:
    return "generators";
  case LimitedBy::Max:
    return "max";
  }
  return "target";
}

CapacitySearch::CapacitySearch(Options options) : options_(options) {
  options_.max = std::max(options_.max, options_.start);
  next_ = options_.start;
}

std::optional<double> CapacitySearch::maxPassing() const {
  if (passes_.empty())
    return std::nullopt;
  return *passes_.rbegin();
}

void CapacitySearch::finish(LimitedBy by) {
  limited_by_ = by;
  next_.reset();
}

std::optional<double> CapacitySearch::record(ProbeVerdict verdict) {
  if (!next_)
    return std::nullopt;
  const double rate = *next_;
  switch (verdict) {
  case ProbeVerdict::Inconclusive:
    // The generators, not the target: nothing above the last trustworthy pass is known.
    finish(LimitedBy::Generators);
    return next_;
  case ProbeVerdict::Pass:
    passes_.insert(rate);
    if (confirming_ && *confirming_ == rate && --confirms_left_ > 0)
      return next_; // the same rate once more
    if (!fail_ && !confirming_ && rate < options_.max) {
      next_ = std::min(rate * options_.growth, options_.max);
      return next_;
    }
    if (rate >= options_.max)
      max_reached_ = true;
    break;
  case ProbeVerdict::Fail:
    fail_ = fail_ ? std::min(*fail_, rate) : rate;
    // A rate that fails now says that nothing at or above it holds, whatever passed before.
    passes_.erase(passes_.lower_bound(*fail_), passes_.end());
    max_reached_ = false;
    if (passes_.empty()) {
      finish(LimitedBy::Target);
      return next_;
    }
    break;
  }
  settleOrBisect();
  return next_;
}

void CapacitySearch::settleOrBisect() {
  const double best = *passes_.rbegin();
  const bool close = max_reached_ || (fail_ && *fail_ - best <= options_.resolution * *fail_);
  if (!close) {
    confirming_.reset();
    next_ = (best + *fail_) / 2;
    return;
  }
  if (confirming_ == best || options_.confirm == 0) {
    finish(max_reached_ ? LimitedBy::Max : LimitedBy::Target);
    return;
  }
  confirming_ = best;
  confirms_left_ = options_.confirm;
  next_ = best;
}

int CapacitySearch::exitCode() const {
  if (limited_by_ == LimitedBy::Generators)
    return kExitInfrastructure;
  if (passes_.empty())
    return kExitFailed;
  return kExitPassed;
}

} // namespace stampede::master
