// Judging a response: the step's expect (status, body_contains, json, header, max_latency, in
// that order) and then its captures (json, header, regex) into the virtual user's slots.
// Called on the virtual user's load thread, once per response that arrived.
#pragma once

#include "common/scenario.h"
#include "worker/http_client.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace stampede::worker {

// Every step's expect.json values, parsed once (at engine build) so that a response's value is
// compared as JSON, not serialised per request. The comparison is the one the values' compact
// text would give: 42 is not 42.0, nor 0.0 -0.0. Read-only after construction: any thread.
class JsonExpectations {
public:
  explicit JsonExpectations(const common::Scenario& scenario);
  // Parallel to step.expect.json; an entry is empty when its text is not the compact form
  // nlohmann would write (then the response's value is serialised and compared as text).
  // nullptr for a step without expect.json.
  const std::vector<std::optional<nlohmann::json>>* of(const common::Step& step) const;

private:
  void add(const std::vector<common::Step>& steps);
  std::unordered_map<const common::Step*, std::vector<std::optional<nlohmann::json>>> by_step_;
};

// Returns the error kind ("http_503" in `error_kind`'s storage, else a literal), or nullptr
// when the response passes and every capture found its value. On a failure, `detail` says
// what was wanted. `session` answers header lookups of this response; `service_us` is the
// time from send to response, for max_latency. A capture that finds nothing clears its slot.
// `expected` holds the scenario's parsed expect.json values.
const char* judge(const common::Step& step, const JsonExpectations& expected,
                  const HttpResponse& response, const HttpSession& session, int64_t service_us,
                  std::vector<std::string>& slots, std::string& error_kind, std::string& detail);

} // namespace stampede::worker
