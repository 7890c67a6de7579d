// The report's figures for messaging steps (PUBLISH and SUBSCRIBE rows of the step table):
// what their StepStats mean in messaging terms. Used by master/report.cpp.
#pragma once

#include "common/stats.h"

#include <nlohmann/json.hpp>

#include <string_view>

namespace stampede::master {

// Adds "messaging": {...} to a step's JSON and names its protocol, when `method` is PUBLISH
// or SUBSCRIBE; leaves other steps alone.
void addMessagingFigures(nlohmann::json& step, const common::StepStats& s, std::string_view method,
                         bool open);

} // namespace stampede::master
