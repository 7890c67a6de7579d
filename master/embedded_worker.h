// The worker daemon in the master's own process, for a run without --workers or --listen: the
// same code path as a cluster of one, over inproc://. Part of the master binary, not of the
// master library, which so needs no HTTP stack.
#pragma once

#include "master/run.h"

namespace stampede::master {

// Opens the daemon's socket and starts its control thread; the worker stops when the returned
// object is destroyed. Called on the control thread.
std::unique_ptr<LocalWorker> startEmbeddedWorker(zmq::context_t& context,
                                                 const LocalWorkerOptions& options);

} // namespace stampede::master
