// The first failing request in full: what an operator needs to chase it. Built once per run
// on the load thread that saw the error; carried to the master in ErrorReport.
#pragma once

#include "common/clock.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stampede::common {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ErrorContext {
  uint32_t worker_index = 0;
  uint64_t vu = 0;
  std::string flow;
  std::string step;
  std::string method;
  std::string url; // secrets from env() masked
  int status = 0;  // 0 for transport errors
  std::string error_kind;
  std::string detail; // transport error text, or what the expectation wanted
  HeaderList headers;
  std::string body; // first 1 KiB
  SteadyTime at;    // when the failing response completed (the master's clock in reports)
  std::chrono::system_clock::time_point wall_at;
  // A data feeder with on_exhausted: halt ran out: this error halts the run whatever
  // halt.on_error says (ErrorReport.data_exhausted on the wire).
  bool data_exhausted = false;
};

// Hands errors from any number of load threads to one consumer (the worker's control thread)
// without ever losing the first: the first offer is kept whatever comes after it (write-once),
// later ones are counted and at most `keep_later` of them kept. Thread-safe.
class ErrorHandOver {
public:
  explicit ErrorHandOver(size_t keep_later = 4) : keep_later_(keep_later) {}

  // Any thread. True when `error` is the first offered since construction or reset().
  bool offer(ErrorContext error);
  // The consumer: what was kept and not taken yet, the first error first.
  std::vector<ErrorContext> take();
  // The first error offered, if any (whether taken or not).
  std::optional<ErrorContext> first() const;
  // Every offer, the first included (kept or not).
  uint64_t offered() const;
  // For a new run.
  void reset();

private:
  mutable std::mutex mutex_;
  size_t keep_later_;
  std::optional<ErrorContext> first_;
  bool first_taken_ = false;
  std::vector<ErrorContext> later_; // kept, not taken yet
  size_t later_kept_ = 0;           // kept since the reset, taken or not
  uint64_t offered_ = 0;
};

} // namespace stampede::common
