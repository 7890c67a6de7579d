// CSV writing for per_worker feeder slices (the reader is the scenario loader's).
#include "common/scenario.h"

namespace stampede::common {

namespace {

void appendField(std::string& out, const std::string& field) {
  if (field.find_first_of(",\"\r\n") == std::string::npos) {
    out += field;
    return;
  }
  out += '"';
  for (char c : field) {
    if (c == '"')
      out += '"';
    out += c;
  }
  out += '"';
}

void appendRow(std::string& out, const std::vector<std::string>& row) {
  for (size_t i = 0; i < row.size(); ++i) {
    if (i > 0)
      out += ',';
    appendField(out, row[i]);
  }
  out += '\n';
}

} // namespace

std::string writeCsv(const std::vector<std::string>& columns,
                     const std::vector<std::vector<std::string>>& rows) {
  std::string out;
  appendRow(out, columns);
  for (const auto& row : rows)
    appendRow(out, row);
  return out;
}

} // namespace stampede::common
