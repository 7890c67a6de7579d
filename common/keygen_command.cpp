#include "common/keygen_command.h"

#include "common/keys.h"

#include <fmt/core.h>

#include <filesystem>
#include <string>

namespace stampede::common {

int runKeygen(const char* program, const char* default_name, int argc, const char* const* argv) {
  std::string out_dir;
  std::string name = default_name;
  bool force = false;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if ((arg == "--out" || arg == "--name") && i + 1 < argc) {
      (arg == "--out" ? out_dir : name) = argv[++i];
    } else if (arg == "--force") {
      force = true;
    } else if (arg == "--help" || arg == "-h") {
      fmt::print("usage: {} keygen --out DIR [--name NAME] [--force]\n"
                 "writes DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (default NAME: {})\n",
                 program, default_name);
      return 0;
    } else {
      fmt::print(stderr, "{} keygen: unexpected argument '{}' (see {} keygen --help)\n", program,
                 arg, program);
      return 2;
    }
  }
  if (out_dir.empty()) {
    fmt::print(stderr, "{} keygen: --out DIR is required\n", program);
    return 2;
  }
  if (name.empty() || name.find('/') != std::string::npos) {
    fmt::print(stderr, "{} keygen: --name must be a plain file name\n", program);
    return 2;
  }
  try {
    writeKeyPair(out_dir, name, force);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{} keygen: {}\n", program, e.what());
    return 2;
  }
  const auto base = std::filesystem::path(out_dir) / name;
  fmt::print("wrote {}.key (secret, 0600) and {}.pub\n", base.string(), base.string());
  return 0;
}

} // namespace stampede::common
