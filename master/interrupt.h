// Ctrl-C and SIGTERM during a run: the first asks for a graceful halt (the run loop halts the
// workers and writes the report), the second for an exit now. The handlers only set a flag;
// the control thread reads it.
#pragma once

#include "master/cluster.h"

namespace stampede::master {

// Installs the SIGINT and SIGTERM handlers. Call once, before the cluster opens.
void catchInterrupts();
// Whether Ctrl-C or SIGTERM came at least once, and twice.
bool interrupted();
bool interruptedTwice();

// The second Ctrl-C: Halt to every running worker and Stop to those waiting to start, so that
// none keeps loading until its master-silence timeout, then exit without a report (130).
[[noreturn]] void exitNow(Cluster& cluster);

} // namespace stampede::master
