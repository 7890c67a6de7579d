// Which queues a scenario consumes from: only those get loss and duplicate accounting (a queue
// that only this run's producers use is drained by someone else, not lost). Both sides use it:
// the workers to record, the master to judge.
#pragma once

#include "common/scenario.h"

#include <map>
#include <string>

namespace stampede::common {

// "queue://name" -> the stats index of the first subscribe step (flows in order, loops walked)
// that consumes from it: where the report puts that queue's losses.
std::map<std::string, size_t> queueConsumers(const Scenario& scenario);

} // namespace stampede::common
