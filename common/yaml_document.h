// One YAML document read from text, within the limits that protect what is built from it.
#pragma once

#include <string>
#include <yaml-cpp/yaml.h>

namespace stampede::common {

// The one document of `text`; ConfigError (in `file_name`) for bad YAML or a second document.
YAML::Node parseDocument(const std::string& text, const std::string& file_name);

// Throws a yaml-cpp exception as a ConfigError in `file_name`, with a clearer message.
[[noreturn]] void yamlError(const std::string& file_name, const YAML::Exception& e);

// What a node is, for "expected X, got Y".
std::string describe(const YAML::Node& node);

} // namespace stampede::common
