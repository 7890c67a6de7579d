// The first failing request in full: what an operator needs to chase it. Built once per run
// on the load thread that saw the error; carried to the master in ErrorReport.
#pragma once

#include "common/clock.h"

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace stampede::common {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ErrorContext {
  uint32_t worker_index = 0;
  uint64_t vu = 0;
  std::string flow;
  std::string step;
  std::string method;
  std::string url; // secrets from env() masked
  int status = 0;  // 0 for transport errors
  std::string error_kind;
  std::string detail; // transport error text, or what the expectation wanted
  HeaderList headers;
  std::string body; // first 1 KiB
  SteadyTime at;    // when the failing response completed (the master's clock in reports)
  std::chrono::system_clock::time_point wall_at;
};

} // namespace stampede::common
