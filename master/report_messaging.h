// The report's figures for messaging steps (PUBLISH and SUBSCRIBE rows of the step table):
// what their StepStats mean in messaging terms. Used by master/report.cpp.
#pragma once

#include "common/stats.h"
#include "master/run_result.h"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace stampede::master {

// Adds "messaging": {...} to a step's JSON and names its protocol, when `method` is PUBLISH
// or SUBSCRIBE; leaves other steps alone.
// `clock_error_ms`: each worker's clock-offset error bound; a SUBSCRIBE step reports the
// bound of its end-to-end figures (a producer's plus a consumer's, the two largest).
void addMessagingFigures(nlohmann::json& step, const common::StepStats& s, std::string_view method,
                         bool open, const std::vector<double>& clock_error_ms);

// The bound of end-to-end figures across workers: the two largest of the workers' bounds
// added (one worker: its own twice, an upper bound).
double clockErrorBoundMs(std::vector<double> clock_error_ms);
// Each worker's clock error bound over the run (the handshake's, or the largest of the offsets
// re-measured during the run).
std::vector<double> workerClockErrorsMs(const RunResult& r);

// The console's messaging lines, after the step table: per SUBSCRIBE step, end to end from the
// send split into same-worker (exact) and cross-worker pairs with the clock error bound, and
// what the queues' accounting found. Empty without such a step.
std::string formatMessagingSummary(const RunResult& r);

} // namespace stampede::master
