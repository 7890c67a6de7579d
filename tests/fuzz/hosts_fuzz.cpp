// libFuzzer target: the hosts file parser (master::parseHostsText). A bad file is a ConfigError
// with a message; a good one gives workers whose endpoint() is a usable ZeroMQ address.
#include "common/config_error.h"
#include "master/hosts_file.h"

#include <cstddef>
#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto workers = stampede::master::parseHostsText(
        std::string(reinterpret_cast<const char*>(data), size), "hosts.txt");
    if (workers.empty())
      __builtin_trap(); // documented: no worker at all is an error
    for (const auto& w : workers) {
      if (w.host.empty() || w.port == 0 || !(w.weight > 0) || w.line <= 0 ||
          w.endpoint().rfind("tcp://", 0) != 0)
        __builtin_trap();
    }
  } catch (const stampede::common::ConfigError& e) {
    if (std::string(e.what()).empty())
      __builtin_trap();
  }
  return 0;
}
