// Judging a response: the step's expect (status, body_contains, json, header, max_latency, in
// that order) and then its captures (json, header, regex) into the virtual user's slots.
// Called on the virtual user's load thread, once per response that arrived.
#pragma once

#include "common/scenario.h"
#include "worker/http_client.h"

#include <cstdint>
#include <string>
#include <vector>

namespace stampede::worker {

// Returns the error kind ("http_503" in `error_kind`'s storage, else a literal), or nullptr
// when the response passes and every capture found its value. On a failure, `detail` says
// what was wanted. `session` answers header lookups of this response; `service_us` is the
// time from send to response, for max_latency. A capture that finds nothing clears its slot.
const char* judge(const common::Step& step, const HttpResponse& response,
                  const HttpSession& session, int64_t service_us, std::vector<std::string>& slots,
                  std::string& error_kind, std::string& detail);

} // namespace stampede::worker
