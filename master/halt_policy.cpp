#include "master/halt_policy.h"

#include <utility>

namespace stampede::master {
namespace {

HaltInfo haltFor(HaltReason reason, double at_s) {
  HaltInfo info;
  info.reason = reason;
  info.at_s = at_s;
  return info;
}

} // namespace

int haltExitCode(HaltReason reason) {
  switch (reason) {
  case HaltReason::Interrupted:
    return kExitInterrupted;
  case HaltReason::WorkerLost:
    return kExitInfrastructure;
  case HaltReason::FirstError:
  case HaltReason::ErrorCount:
  case HaltReason::ErrorRate:
  case HaltReason::Threshold:
  case HaltReason::DataExhausted:
    return kExitFailed;
  }
  return kExitFailed;
}

HaltPolicy::HaltPolicy(const common::HaltSpec& spec)
    : on_error_(spec.on_error), error_count_(spec.error_count),
      on_worker_lost_(spec.on_worker_lost) {}

Decision HaltPolicy::halt(HaltInfo info) {
  if (halt_)
    return Decision::Continue;
  halt_ = std::move(info);
  return Decision::Halt;
}

Decision HaltPolicy::onError(common::ErrorContext error, bool data_exhausted, uint32_t worker,
                             double at_s) {
  if (data_exhausted && !halt_) {
    if (!first_error_)
      first_error_ = error;
    auto info = haltFor(HaltReason::DataExhausted, at_s);
    info.error_kind = error.error_kind;
    info.error_at = error.at;
    info.error_worker = worker;
    return halt(std::move(info));
  }
  if (!first_error_) {
    first_error_ = error;
    if (on_error_ == common::HaltSpec::OnError::First) {
      auto info = haltFor(HaltReason::FirstError, at_s);
      info.step = error.step;
      info.error_kind = error.error_kind;
      info.error_at = error.at;
      info.error_worker = worker;
      return halt(std::move(info));
    }
  } else if (halt_ && halt_->also_failed.size() < kAlsoFailedListed) {
    halt_->also_failed.push_back(std::move(error));
  }
  return Decision::Continue;
}

Decision HaltPolicy::onErrorCount(uint64_t errors, double at_s) {
  if (on_error_ != common::HaltSpec::OnError::Count || halt_ || errors < error_count_)
    return Decision::Continue;
  auto info = haltFor(HaltReason::ErrorCount, at_s);
  info.observed = double(errors);
  if (first_error_) {
    info.step = first_error_->step;
    info.error_kind = first_error_->error_kind;
  }
  return halt(std::move(info));
}

Decision HaltPolicy::onThresholdBreach(std::string expr, std::optional<double> value, double at_s) {
  auto info = haltFor(HaltReason::Threshold, at_s);
  info.threshold = std::move(expr);
  info.observed = value;
  return halt(std::move(info));
}

Decision HaltPolicy::onErrorRate(double rate, double at_s) {
  auto info = haltFor(HaltReason::ErrorRate, at_s);
  info.observed = rate;
  return halt(std::move(info));
}

Decision HaltPolicy::onWorkerLost(double at_s) {
  if (on_worker_lost_ != common::HaltSpec::OnWorkerLost::Halt)
    return Decision::Continue;
  return halt(haltFor(HaltReason::WorkerLost, at_s));
}

Decision HaltPolicy::onWorkerLeft() {
  return Decision::Continue;
}

Decision HaltPolicy::onInterrupted(double at_s) {
  return halt(haltFor(HaltReason::Interrupted, at_s));
}

HaltPolicy::Verdict HaltPolicy::verdict(bool threshold_failed, bool outputs_failed) const {
  Verdict v;
  if (halt_) {
    v.outcome = Outcome::Halted;
    v.exit_code = haltExitCode(halt_->reason);
  } else if (threshold_failed) {
    v.outcome = Outcome::Failed;
    v.exit_code = kExitFailed;
  }
  if (outputs_failed)
    v.exit_code = afterOutputFailure(v.exit_code);
  return v;
}

int HaltPolicy::afterOutputFailure(int exit_code) {
  return exit_code == kExitPassed ? kExitInfrastructure : exit_code;
}

} // namespace stampede::master
