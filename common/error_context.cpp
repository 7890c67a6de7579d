#include "common/error_context.h"

namespace stampede::common {

bool ErrorHandOver::offer(ErrorContext error) {
  std::lock_guard lock(mutex_);
  ++offered_;
  if (!first_) {
    first_ = std::move(error);
    return true;
  }
  if (later_kept_ < keep_later_) {
    ++later_kept_;
    later_.push_back(std::move(error));
  }
  return false;
}

std::vector<ErrorContext> ErrorHandOver::take() {
  std::lock_guard lock(mutex_);
  std::vector<ErrorContext> out;
  if (first_ && !first_taken_) {
    first_taken_ = true;
    out.push_back(*first_);
  }
  for (auto& e : later_)
    out.push_back(std::move(e));
  later_.clear();
  return out;
}

std::optional<ErrorContext> ErrorHandOver::first() const {
  std::lock_guard lock(mutex_);
  return first_;
}

uint64_t ErrorHandOver::offered() const {
  std::lock_guard lock(mutex_);
  return offered_;
}

void ErrorHandOver::reset() {
  std::lock_guard lock(mutex_);
  first_.reset();
  first_taken_ = false;
  later_.clear();
  later_kept_ = 0;
  offered_ = 0;
}

} // namespace stampede::common
