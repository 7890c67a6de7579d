#include "common/config_error.h"

#include <utility>

namespace stampede::common {

namespace {

// "file:line:col: key.path: message", dropping what is unknown, so that editors and
// terminals can jump to the spot.
std::string describe(const std::string& file, int line, int column, const std::string& key_path,
                     const std::string& message) {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line);
    if (column > 0)
      out += ':' + std::to_string(column);
  }
  out += ": ";
  if (!key_path.empty())
    out += key_path + ": ";
  out += message;
  // One line, safe on a terminal: a quoted "\e[2J" in a key or value is a valid string.
  std::string safe;
  for (const char c : out) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte != 0x7f) {
      safe += c;
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      safe +=
          c == '\n' ? std::string("\\n") : std::string{'\\', 'x', kHex[byte >> 4], kHex[byte & 15]};
    }
  }
  return safe;
}

} // namespace

ConfigError::ConfigError(std::string file, int line, int column, std::string key_path,
                         std::string message)
    : std::runtime_error(describe(file, line, column, key_path, message)), file_(std::move(file)),
      line_(line), column_(column), key_path_(std::move(key_path)), message_(std::move(message)) {}

} // namespace stampede::common
