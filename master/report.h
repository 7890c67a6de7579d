// report.json (schema in README.md) and timeseries.csv. Called by the control thread.
#pragma once

#include "master/interval_rows.h"
#include "master/run_result.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

namespace stampede::master {

// Open model: a schedule lag p99 above this flags the run as saturated (figures understate
// latency, since requests went out late).
constexpr int64_t kSaturatedLagUs = 10'000;

nlohmann::json buildReport(const RunResult& r);
// An error in full, as report.json's first_error (and each capacity probe's) gives it.
nlohmann::json errorJson(const common::ErrorContext& e, common::SteadyTime t0);
// Writes DIR/report.json atomically (temp file + rename). Returns an error message or "".
std::string writeReport(const std::string& dir, const RunResult& r);

// DIR/timeseries.csv: one row per second of the run (IntervalRows), flushed as written, so a
// crash loses nothing already measured.
class Timeseries {
public:
  Timeseries() = default;
  ~Timeseries();
  Timeseries(const Timeseries&) = delete;
  Timeseries& operator=(const Timeseries&) = delete;
  // Creates (truncates) the file and writes the header. Returns an error message or "".
  std::string open(const std::string& dir);
  // Returns an error message (disk full...) or "". Rows are kept counting after a failure:
  // errors_total stays right for the rows that do get written.
  std::string append(const IntervalRow& row);

private:
  std::string write(const std::string& text); // an error message or ""

  std::FILE* file_ = nullptr;
  std::string path_;
  uint64_t errors_total_ = 0;
};

} // namespace stampede::master
