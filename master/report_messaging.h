// The report's figures for messaging steps (PUBLISH and SUBSCRIBE rows of the step table):
// what their StepStats mean in messaging terms. Used by master/report.cpp.
#pragma once

#include "common/stats.h"

#include <nlohmann/json.hpp>

#include <string_view>
#include <vector>

namespace stampede::master {

// Adds "messaging": {...} to a step's JSON and names its protocol, when `method` is PUBLISH
// or SUBSCRIBE; leaves other steps alone.
// `clock_error_ms`: each worker's clock-offset error bound; a SUBSCRIBE step reports the
// bound of its end-to-end figures (a producer's plus a consumer's, the two largest).
void addMessagingFigures(nlohmann::json& step, const common::StepStats& s, std::string_view method,
                         bool open, const std::vector<double>& clock_error_ms);

} // namespace stampede::master
