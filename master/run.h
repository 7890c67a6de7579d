// One run of a scenario, from `master` arguments to an exit code: validate, gather the
// workers (an embedded one when no --workers or --listen is given), hand out shares, start
// them together, merge their stats, halt or stop, and write the report. The calling thread is
// the control thread.
#pragma once

#include "master/cli.h"

namespace stampede::master {

// Returns the process exit code (0 passed, 1 halted/failed, 2 invalid, 3 infra, 130 interrupted).
int runScenario(const CliOptions& cli);

} // namespace stampede::master
