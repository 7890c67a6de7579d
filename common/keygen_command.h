// `master keygen` and `worker keygen`: one implementation for both programs.
#pragma once

namespace stampede::common {

// argv starts after "keygen". Returns the exit code (0 written, 2 usage or refused).
int runKeygen(const char* program, const char* default_name, int argc, const char* const* argv);

} // namespace stampede::common
