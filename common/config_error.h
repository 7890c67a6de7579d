// The one exception for configuration mistakes: carries file:line:col and the key path,
// caught in main() and printed as one line.
#pragma once

#include <stdexcept>
#include <string>

namespace stampede::common {

class ConfigError : public std::runtime_error {
public:
  // line and column are 1-based; 0 means "the whole file" and is left out of the message.
  ConfigError(std::string file, int line, int column, std::string key_path, std::string message);

  const std::string& file() const { return file_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& keyPath() const { return key_path_; }
  const std::string& message() const { return message_; }

private:
  std::string file_;
  int line_;
  int column_;
  std::string key_path_;
  std::string message_;
};

} // namespace stampede::common
