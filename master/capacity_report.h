// report.json's `capacity` object (README "report.json"). Control thread.
#pragma once

#include "common/clock.h"
#include "master/capacity_result.h"

#include <nlohmann/json.hpp>

namespace stampede::master {

nlohmann::json capacityJson(const CapacityResult& c, common::SteadyTime t0);

} // namespace stampede::master
