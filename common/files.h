// Reading a whole file for configuration (scenarios, data files, hosts and env files).
#pragma once

#include <optional>
#include <string>

namespace stampede::common {

// The whole file, or std::nullopt with the errno of the failure in `error` (a directory opens
// but does not read: EISDIR).
std::optional<std::string> readWholeFile(const std::string& path, int& error);

} // namespace stampede::common
