// The messaging start barrier (issue 17): a subscription exists only once the broker confirmed
// it, and a message published before that is lost to its subscriber. So when a run has
// publishers and users that subscribe for life (common::needsStartBarrier), every worker first
// opens its subscribers' subscriptions, each confirmed by a RECEIPT on its SUBSCRIBE, and no
// load starts (Start) until every worker has confirmed all of its own. Control thread only.
#pragma once

#include "master/run_context.h"

#include <optional>

namespace stampede::master {

// Between prepare and start: sends Subscribe to every Ready worker and waits, up to
// messaging.start_barrier, for each to confirm all its subscriptions; records the time it took
// in run.start_barrier_s. A subscription that failed ends the wait: its error goes to
// run.early_errors for the run loop to judge. Returns an exit code when the run cannot start (a
// worker did not confirm in time, Ctrl-C), after saying why on stderr, naming the worker. Does
// nothing when the run needs no barrier.
std::optional<int> startBarrier(RunContext& run);

} // namespace stampede::master
