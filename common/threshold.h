// A pass/fail criterion on the run's figures (SCENARIO.md `halt.thresholds`):
// `METRIC[{step: NAME}] OP VALUE`, e.g. `p99 < 250ms`, `error_rate < 0.5%`,
// `p95{step: login} < 400ms`, `rps >= 100`. Parsed once at load; any thread may read it.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace stampede::common {

struct Threshold {
  enum class Metric { P50, P90, P95, P99, P999, Max, Mean, ErrorRate, Rps, Dropped };
  enum class Op { Less, LessEqual, Greater, GreaterEqual };

  std::string expr; // as written, for reports
  Metric metric = Metric::P99;
  std::string step; // empty: the whole run
  Op op = Op::Less;
  double value = 0; // latency metrics in ms, error_rate as a fraction, rps per second
  std::chrono::microseconds window{0}; // 0: the whole run so far
  bool abort = false;                  // a breach halts the run at once

  bool isLatency() const { return metric <= Metric::Mean; }
  bool holds(double observed) const;
};

// Parses the expression part; on failure returns std::nullopt and sets `error` (with the byte
// offset of the problem in `offset`).
std::optional<Threshold> parseThreshold(std::string_view expr, std::string& error, size_t& offset);

} // namespace stampede::common
