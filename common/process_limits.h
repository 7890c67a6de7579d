// Process set-up shared by master and worker.
#pragma once

namespace stampede::common {

// Raises the open-file soft limit to the hard limit: every virtual user holds a socket, and a
// default soft limit of 1024 would turn a 5,000-user run into connect errors.
void raiseFileLimit() noexcept;

} // namespace stampede::common
