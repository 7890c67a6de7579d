// A capacity run's SetRate (one probe of the search) applied to the engine, its times put on
// this worker's clock. Control thread.
#pragma once

#include "stampede.pb.h"
#include "worker/engine.h"

#include <cstdint>

namespace stampede::worker {

// `clock_offset_ns`: this worker's clock minus the master's (Welcome.clock_offset_ns).
void applySetRate(Engine& engine, const wire::SetRate& set_rate, int64_t clock_offset_ns);

} // namespace stampede::worker
