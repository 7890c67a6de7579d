#include "master/env_file.h"

#include "common/config_error.h"
#include "common/files.h"

#include <cstring>
#include <sstream>

namespace stampede::master {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r");
  if (begin == std::string::npos)
    return {};
  const auto end = s.find_last_not_of(" \t\r");
  return s.substr(begin, end - begin + 1);
}

bool isName(const std::string& name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])))
    return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      return false;
  return true;
}

} // namespace

std::map<std::string, std::string> parseEnvText(const std::string& text, const std::string& name) {
  std::map<std::string, std::string> values;
  std::istringstream in(text);
  std::string raw;
  int line = 0;
  while (std::getline(in, raw)) {
    ++line;
    std::string entry = trim(raw);
    if (entry.empty() || entry.front() == '#')
      continue;
    if (entry.rfind("export ", 0) == 0)
      entry = trim(entry.substr(7));
    const auto eq = entry.find('=');
    if (eq == std::string::npos)
      throw common::ConfigError(name, line, 1, "",
                                "expected NAME=VALUE, got \"" + entry.substr(0, 60) + "\"");
    const std::string key = trim(entry.substr(0, eq));
    if (!isName(key))
      throw common::ConfigError(name, line, 1, "",
                                "\"" + key.substr(0, 60) + "\" is not a variable name");
    std::string value = trim(entry.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') &&
        value.back() == value.front())
      value = value.substr(1, value.size() - 2);
    else if (!value.empty() && (value.front() == '"' || value.front() == '\''))
      throw common::ConfigError(name, line, int(eq + 2), key, "unterminated quote");
    values[key] = value;
  }
  return values;
}

std::map<std::string, std::string> parseEnvFile(const std::string& path) {
  std::string problem;
  const auto text = common::readWholeFile(path, common::kMaxListFileBytes, "an env file", problem);
  if (!text)
    throw common::ConfigError(path, 0, 0, "", "cannot read the env file: " + problem);
  return parseEnvText(*text, path);
}

} // namespace stampede::master
