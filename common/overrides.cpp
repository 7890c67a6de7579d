#include "common/overrides.h"

#include "common/config_error.h"
#include "common/text.h"
#include "common/yaml_document.h"

#include <charconv>

namespace stampede::common {

namespace {

[[noreturn]] void overrideError(const std::string& text, const std::string& message) {
  throw ConfigError("--set " + text, 0, 0, "", message);
}

} // namespace

Override parseOverride(const std::string& text) {
  Override o;
  o.text = text;
  const size_t eq = text.find('=');
  if (eq == std::string::npos)
    overrideError(text, "expected KEY.PATH=VALUE, e.g. load.users=50");
  const std::string_view path = trim(std::string_view(text).substr(0, eq));
  if (path.empty())
    overrideError(text, "the key path before '=' is empty (expected KEY.PATH=VALUE)");
  size_t i = 0;
  while (i < path.size()) {
    const size_t start = i;
    while (i < path.size() && path[i] != '.' && path[i] != '[')
      ++i;
    const std::string_view key = trim(path.substr(start, i - start));
    if (key.empty())
      overrideError(text, "empty key in the path " + quoteValue(path) +
                              " (keys are joined with '.', list items are [i])");
    o.segments.push_back({std::string(key), -1});
    while (i < path.size() && path[i] == '[') {
      const size_t close = path.find(']', i);
      const std::string_view digits =
          close == std::string_view::npos ? std::string_view() : path.substr(i + 1, close - i - 1);
      int64_t index = -1;
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
      if (digits.empty() || ec != std::errc() || ptr != digits.data() + digits.size() || index < 0)
        overrideError(text, "expected a list index like [0] in " + quoteValue(path));
      o.segments.push_back({std::string(), index});
      i = close + 1;
    }
    if (i < path.size()) {
      if (path[i] != '.')
        overrideError(text, "expected '.' or '[' after ']' in " + quoteValue(path));
      if (++i == path.size())
        overrideError(text, "the path " + quoteValue(path) + " ends with '.'");
    }
  }
  for (const auto& s : o.segments)
    o.path = s.index >= 0 ? indexed(o.path, size_t(s.index)) : join(o.path, s.key);
  try {
    o.value = parseDocument(text.substr(eq + 1), "--set " + text);
  } catch (const ConfigError& e) {
    overrideError(text, "the value is not valid YAML: " + e.message());
  }
  return o;
}

// Puts `o.value` at `o.segments[at..]` under `node`, creating missing mapping keys.
// `node` is taken by value: a yaml-cpp Node is a handle, and assigning one would overwrite the
// node it refers to.
void applyOverride(YAML::Node node, const Override& o, size_t at, const std::string& so_far) {
  const Override::Segment& segment = o.segments[at];
  const bool last = at + 1 == o.segments.size();
  if (segment.index >= 0) {
    if (!node.IsSequence())
      overrideError(o.text, (so_far.empty() ? std::string("the scenario") : so_far) + " is " +
                                describe(node) + ", not a list: [" + std::to_string(segment.index) +
                                "] cannot index it");
    if (size_t(segment.index) >= node.size())
      overrideError(o.text, "index [" + std::to_string(segment.index) + "] is out of range: " +
                                so_far + " has " + std::to_string(node.size()) + " item" +
                                (node.size() == 1 ? "" : "s"));
    const std::string here = indexed(so_far, size_t(segment.index));
    if (last)
      node[size_t(segment.index)] = o.value;
    else
      applyOverride(node[size_t(segment.index)], o, at + 1, here);
    return;
  }
  if (!node.IsMap() && !node.IsNull())
    overrideError(o.text, so_far + " is " + describe(node) + ", not a mapping: it has no key '" +
                              segment.key + "'" +
                              (node.IsSequence() ? " (index a list with [i])" : ""));
  const std::string here = join(so_far, segment.key);
  if (last) {
    node[segment.key] = o.value;
    return;
  }
  bool exists = false;
  for (const auto& kv : node)
    exists = exists || (kv.first.IsScalar() && kv.first.Scalar() == segment.key);
  if (!exists || node[segment.key].IsNull())
    node[segment.key] = YAML::Node(YAML::NodeType::Map);
  applyOverride(node[segment.key], o, at + 1, here);
}

// `path` is `prefix` or lies under it.
bool pathWithin(std::string_view path, std::string_view prefix) {
  if (path.substr(0, prefix.size()) != prefix)
    return false;
  return path.size() == prefix.size() || path[prefix.size()] == '.' || path[prefix.size()] == '[';
}

} // namespace stampede::common
