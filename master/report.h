// report.json (schema in README.md) and timeseries.csv. Called by the control thread.
#pragma once

#include "master/run_result.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

namespace stampede::master {

// Open model: a schedule lag p99 above this flags the run as saturated (figures understate
// latency, since requests went out late).
constexpr int64_t kSaturatedLagUs = 10'000;

nlohmann::json buildReport(const RunResult& r);
// Writes DIR/report.json atomically (temp file + rename). Returns an error message or "".
std::string writeReport(const std::string& dir, const RunResult& r);

// DIR/timeseries.csv: one row per second, flushed as written, so a crash loses nothing
// already measured.
class Timeseries {
public:
  Timeseries() = default;
  ~Timeseries();
  // Returns an error message or "".
  std::string open(const std::string& dir);
  void append(double elapsed_s, int users, const common::StepStats& interval, double interval_s,
              uint64_t total_errors);

private:
  std::FILE* file_ = nullptr;
};

} // namespace stampede::master
