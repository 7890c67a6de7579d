#include "common/csv.h"

namespace stampede::common {

// Quoted fields may hold commas, doubled quotes and line breaks; records end in LF or CRLF.
// Blank lines are skipped (a trailing one is common), so a one-column empty value is written
// quoted. Returns the problem, or nothing when `out` holds the table.
std::optional<CsvProblem> parseCsv(std::string_view text, CsvTable& out) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") // a UTF-8 byte order mark, as spreadsheets write
    text.remove_prefix(3);
  const size_t n = text.size();
  size_t i = 0;
  int line = 1;
  bool have_header = false;
  auto atRecordEnd = [&](size_t at) {
    return at >= n || text[at] == '\n' ||
           (text[at] == '\r' && (at + 1 == n || text[at + 1] == '\n'));
  };
  while (i < n) {
    if (text[i] == '\n' || (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')) {
      i += text[i] == '\r' ? 2 : 1;
      ++line;
      continue;
    }
    const int record_line = line;
    std::vector<std::string> fields;
    while (true) {
      std::string field;
      if (i < n && text[i] == '"') {
        const int quote_line = line;
        ++i;
        while (true) {
          if (i >= n)
            return CsvProblem{quote_line, "a quoted field is not closed"};
          const char c = text[i];
          if (c == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (c == '\n')
            ++line;
          field += c;
          ++i;
        }
        if (i < n && text[i] != ',' && !atRecordEnd(i))
          return CsvProblem{line, "text after the closing quote of a field (write a quote inside "
                                  "a quoted field as \"\")"};
      } else {
        while (i < n && text[i] != ',' && !atRecordEnd(i)) {
          if (text[i] == '"')
            return CsvProblem{line, "a quote inside an unquoted field (quote the whole field and "
                                    "write the quote as \"\")"};
          field += text[i++];
        }
      }
      fields.push_back(std::move(field));
      if (i < n && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < n && text[i] == '\r')
        ++i;
      if (i < n && text[i] == '\n') {
        ++i;
        ++line;
      }
      break;
    }
    if (!have_header) {
      out.header = std::move(fields);
      have_header = true;
    } else if (fields.size() != out.header.size()) {
      return CsvProblem{record_line, "this row has " + std::to_string(fields.size()) + " field" +
                                         (fields.size() == 1 ? "" : "s") + ", the header has " +
                                         std::to_string(out.header.size())};
    } else {
      out.rows.push_back(std::move(fields));
    }
  }
  if (!have_header)
    return CsvProblem{1, "the file is empty (a header row naming the columns is required)"};
  return std::nullopt;
}

std::string writeCsv(const std::vector<std::string>& columns,
                     const std::vector<std::vector<std::string>>& rows) {
  std::string out;
  auto record = [&out](const std::vector<std::string>& fields) {
    for (size_t i = 0; i < fields.size(); ++i) {
      if (i > 0)
        out += ',';
      const std::string& f = fields[i];
      // Empty fields are quoted too: a lone empty field would be a blank line, which readers
      // (ours included) skip.
      if (!f.empty() && f.find_first_of(",\"\r\n") == std::string::npos) {
        out += f;
        continue;
      }
      out += '"';
      for (char c : f) {
        if (c == '"')
          out += '"';
        out += c;
      }
      out += '"';
    }
    out += "\r\n";
  };
  record(columns);
  for (const auto& row : rows)
    record(row);
  return out;
}

} // namespace stampede::common
