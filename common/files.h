// Reading a whole file for configuration (scenarios, data files, hosts and env files).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace stampede::common {

// Size limits of the files the master reads (docs/scenario.md, "Limits"). Hand-written files
// are small; a cap turns `master /dev/zero` or a wrong file name into a prompt error instead
// of gigabytes of memory.
constexpr size_t kMaxScenarioBytes = size_t(16) << 20; // a scenario file
constexpr size_t kMaxDataFileBytes = size_t(64) << 20; // a CSV feeder or a TLS PEM file
constexpr size_t kMaxListFileBytes = size_t(1) << 20;  // an --env-file or a --workers file

// The whole file, or std::nullopt with the reason in `problem`: the system's message (such as
// "No such file or directory"), "a directory, not a file", "a device or a socket, not a file"
// (only regular files and pipes are read), or "16.5 MiB, over the 16 MiB limit for `what`"
// (`what` like "a scenario file"; "more than 16 MiB, ..." for a pipe). At most `max_bytes` (+64
// KiB) are read, so that a pipe or a growing file cannot exhaust memory.
std::optional<std::string> readWholeFile(const std::string& path, size_t max_bytes,
                                         const std::string& what, std::string& problem);

// "16 MiB": how the limits above are written in messages.
std::string describeBytes(size_t bytes);

} // namespace stampede::common
