// CSV (RFC 4180): the feeder files' reader, and the writer that ships per_worker slices.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stampede::common {

struct CsvTable {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

struct CsvProblem {
  int line = 0; // 1-based line of the file
  std::string message;
};

// Quoted fields may hold commas, doubled quotes and line breaks; records end in LF or CRLF.
// Blank lines are skipped (a trailing one is common), so a one-column empty value is written
// quoted. Returns the problem, or nothing when `out` holds the table.
std::optional<CsvProblem> parseCsv(std::string_view text, CsvTable& out);

// Writes rows as CSV (RFC 4180 quoting), header first: how a per_worker slice is shipped.
std::string writeCsv(const std::vector<std::string>& columns,
                     const std::vector<std::vector<std::string>>& rows);

} // namespace stampede::common
