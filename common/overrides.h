// `--set key.path=value` overrides, applied to the scenario's YAML tree before it is loaded.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <yaml-cpp/yaml.h>

namespace stampede::common {

// One `--set key.path=value`: where it goes in the YAML tree, and the value parsed as YAML.
struct Override {
  struct Segment {
    std::string key; // when index < 0
    int64_t index = -1;
  };
  std::string text; // as given
  std::string path; // canonical: keys joined with '.', indexes as [i]; as error paths are written
  std::vector<Segment> segments;
  YAML::Node value;
};

Override parseOverride(const std::string& text);

// Puts `o.value` at `o.segments[at..]` under `node`, creating missing mapping keys.
void applyOverride(YAML::Node node, const Override& o, size_t at, const std::string& so_far);

// `path` is `prefix` or lies under it.
bool pathWithin(std::string_view path, std::string_view prefix);

} // namespace stampede::common
