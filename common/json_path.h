// Evaluating the JSONPath subset of scenario captures and expectations (`$.a.b[0].c`) over a
// response body. The path is parsed once at load (parseJsonPath in scenario.h); a body is
// parsed only when a step captures or expects something from it.
#pragma once

#include "common/scenario.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace stampede::common {

// The value at `path`, or null when the path does not lead anywhere.
const nlohmann::json* findJson(const nlohmann::json& document, const JsonPath& path);

// A captured value as text: strings without quotes, anything else as compact JSON.
std::string jsonCaptureText(const nlohmann::json& value);

// Parses a body; std::nullopt when it is not JSON.
std::optional<nlohmann::json> parseJsonBody(std::string_view body);

} // namespace stampede::common
