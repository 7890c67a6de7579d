// Which control endpoints a worker may bind without keys: loopback only (the demo and local
// tests). Anything else would let anyone on the network drive the worker's load.
#pragma once

#include <string_view>

namespace stampede::worker {

// True for tcp:// on 127.0.0.0/8, ::1 or "localhost", and for ipc:// and inproc://.
bool isLoopbackEndpoint(std::string_view endpoint);

} // namespace stampede::worker
