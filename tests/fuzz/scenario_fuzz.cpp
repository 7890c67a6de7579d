// libFuzzer target: the scenario loader (common::loadScenarioText) on arbitrary YAML. A bad
// scenario is a ConfigError with a message; anything else (a crash, another exception, a
// sanitizer report, a hang, gigabytes of memory) is a finding. The loader runs as on a worker:
// files and env() come from fixed shipped maps, so nothing is read from disk or the environment.
// The one file shipped is the examples' accounts.csv, so that feeders parse too.
#include "common/config_error.h"
#include "common/scenario.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::map<std::string, std::string> kFiles{
      {"accounts.csv", "user,password,region\nalice,\"s3cret,1\",eu-west\n"
                       "bob,\"say \"\"hi\"\"\",us-east\ncarol,x,\n"}};
  static const std::map<std::string, std::string> kEnv{{"TOKEN", "s3cret"}};
  stampede::common::LoadOptions options;
  options.shipped_files = &kFiles;
  options.shipped_env = &kEnv;
  try {
    stampede::common::loadScenarioText(std::string(reinterpret_cast<const char*>(data), size),
                                       "fuzz.yaml", options);
  } catch (const stampede::common::ConfigError& e) {
    if (std::string(e.what()).empty())
      __builtin_trap(); // every refusal says why
  }
  return 0;
}
