// The result phase: what a finished run produced, gathered from the workers' links, the run
// loop and the halt policy, then the report and the summary. Control thread only.
#pragma once

#include "master/run_context.h"
#include "master/run_loop.h"
#include "master/run_result.h"

namespace stampede::master {

// Fills `result` (which holds the run's inputs and the warnings so far) from the cluster's
// links, the loop's halt, lost workers and thresholds, and the policy's verdict.
void collectResult(const RunContext& run, RunLoop& loop, common::SteadyTime ended_at,
                   RunResult& result);

// Prints the first error when one halted the run, writes report.json under --out, and prints
// the summary. Returns the exit code (an infrastructure failure when the report could not be
// written).
int reportResult(const CliOptions& cli, RunResult& result);

} // namespace stampede::master
