// report.json (schema in README.md) and timeseries.csv. Called by the control thread.
#pragma once

#include "master/interval_rows.h"
#include "master/run_result.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace stampede::master {

// Open model: a schedule lag p99 above this flags the run as saturated (figures understate
// latency, since requests went out late).
constexpr int64_t kSaturatedLagUs = 10'000;

nlohmann::json buildReport(const RunResult& r);
// An error in full, as report.json's first_error (and each capacity probe's) gives it.
nlohmann::json errorJson(const common::ErrorContext& e, common::SteadyTime t0);
// Writes every report under --out: report.json, then junit.xml and report.html made from the
// same JSON (and the run's timeseries rows), each atomically; when report.json cannot be
// written, neither of the others is. A failure makes the exit code an infrastructure failure
// and adds a warning to `r`; what was written is then written again to say so.
struct ReportsWritten {
  std::vector<std::string> written;  // paths
  std::vector<std::string> warnings; // one per file that could not be written
};
ReportsWritten writeReports(const std::string& dir, RunResult& r);
// The file names writeReports() writes: a new run removes the previous run's.
inline constexpr const char* kReportFiles[] = {"report.json", "junit.xml", "report.html"};

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
  // Also keep every row's figures, as written, in `series` (for report.html), whether or not
  // a file is open. A late row's counts are added to its second's (rates and percentiles of
  // that second stay those written first).
  void recordInto(std::vector<SeriesPoint>& series) { series_ = &series; }

private:
  std::string write(const std::string& text); // an error message or ""
  void record(const IntervalRow& row);

  std::FILE* file_ = nullptr;
  std::string path_;
  uint64_t errors_total_ = 0;
  std::vector<SeriesPoint>* series_ = nullptr;
};

} // namespace stampede::master
