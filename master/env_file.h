// `--env-file FILE`: NAME=VALUE lines that env() reads before the process environment.
// Blank lines and `#` comments are skipped; `export NAME=VALUE` is accepted; a value in
// matching single or double quotes is taken literally without them. Anything else is a
// ConfigError naming the file and line.
#pragma once

#include <map>
#include <string>

namespace stampede::master {

std::map<std::string, std::string> parseEnvFile(const std::string& path);
std::map<std::string, std::string> parseEnvText(const std::string& text, const std::string& name);

} // namespace stampede::master
