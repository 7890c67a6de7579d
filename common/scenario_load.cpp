#include "common/scenario_loader_internal.h"

namespace stampede::common::scenario_loader {

Scenario Loader::load(YAML::Node root) {
  Scenario s;
  s.file = file_;
  s.source_text = text_;
  if (!root.IsMap())
    fail(root.Mark(), "",
         "a scenario is a mapping of keys (name:, target:, load:, flows:, ...), got " +
             describe(root));
  for (const std::string& text : options_.overrides) {
    Override o = parseOverride(text);
    applyOverride(root, o, 0, "");
    overrides_.push_back(std::move(o));
  }
  s.overrides = options_.overrides;

  const Fields top = checkKeys(root, "",
                               {"name", "target", "load", "capacity", "halt", "http", "messaging",
                                "variables", "data", "flows"});
  requireKeys(root, "", top, {"name", "target"});
  const Field* load = top.find("load");
  const Field* capacity = top.find("capacity");
  if (load && capacity) {
    const Field& second = load->key.Mark().pos > capacity->key.Mark().pos ? *load : *capacity;
    fail(second.key.Mark(), second.name,
         "use either load: (a run at the rates it sets) or capacity: (a search that sets the "
         "rates itself), not both");
  }
  requireKeys(root, "", top, {"flows"});
  const bool own_loads = everyFlowHasLoad(top.find("flows")->value);
  if (!load && !capacity && !options_.find_capacity && !own_loads)
    fail(root.Mark(), "load",
         "required key 'load' is missing (or capacity: for a capacity search, or a load: on "
         "every flow)");
  if (load && own_loads)
    fail(load->key.Mark(), "load",
         "drives no flow: every flow has a load: of its own (remove this one, or the load: of "
         "the flows that should share it)");

  s.name = string(*top.find("name"), "name");
  if (s.name.empty())
    fail(*top.find("name"), "name", "must not be empty");
  s.target = target(*top.find("target"));
  if (load)
    s.load = loadSpec(*load);
  if (capacity)
    s.capacity = capacitySpec(*capacity);
  else if (options_.find_capacity)
    s.capacity = CapacitySpec{};
  if (const Field* f = top.find("variables"))
    variables_ = variables(*f);
  s.variables = variables_;
  if (const Field* f = top.find("data"))
    data(*f);
  // Every capture name needs its slot before any template is compiled: a template may
  // name a value that a later step, or another flow, captures.
  scanCaptures(top.find("flows")->value);
  if (const Field* f = top.find("http"))
    s.http = http(*f);
  if (const Field* f = top.find("messaging"))
    messaging_ = messaging(*f);
  s.messaging = messaging_;
  s.flows = flows(*top.find("flows"));
  pinFlows(s.flows, s.load, *top.find("flows"));
  // After the flows: thresholds may name steps.
  if (const Field* f = top.find("halt"))
    s.halt = halt(*f);
  if (s.capacity) {
    s.load = capacityLoad(*s.capacity, s.http.timeout);
    // Errors are what a capacity search measures: they halt only when the scenario says so.
    const Field* f = top.find("halt");
    if (!f || !child(f->value, "on_error"))
      s.halt.on_error = HaltSpec::OnError::Never;
    if (f && child(f->value, "thresholds"))
      fail(child(f->value, "thresholds").Mark(), "halt.thresholds",
           "a capacity search judges each probe on capacity.slo; thresholds over the whole run "
           "would mix every probe's rate");
  }
  s.groups = loadGroups(s, *top.find("flows"));
  if (s.messaging)
    s.warnings = messagingWarnings(*s.messaging, s.groups);
  s.data = std::move(feeders_);
  s.slots = slots_;
  s.step_table = std::move(step_table_);
  s.env = env_used_;
  s.files = std::move(files_);
  return s;
}

bool Loader::everyFlowHasLoad(const YAML::Node& flows) {
  if (!flows.IsSequence() || flows.size() == 0)
    return false;
  for (const auto& flow : flows)
    if (!flow.IsMap() || !flow["load"])
      return false;
  return true;
}

std::vector<LoadGroup> Loader::loadGroups(const Scenario& s, const Field& flows_field) const {
  std::vector<LoadGroup> groups;
  LoadGroup shared{s.load, {}, "load"};
  for (size_t i = 0; i < s.flows.size(); ++i) {
    const Flow& flow = s.flows[i];
    if (!flow.load) {
      shared.flows.push_back(i);
      continue;
    }
    const std::string path = join(indexed("flows", i), "load");
    if (s.capacity) {
      const YAML::Node node = flows_field.value[i];
      fail(node["load"].Mark(), path,
           "a capacity search runs one open-model rate over every flow: a flow cannot have a "
           "load: of its own in a capacity run");
    }
    groups.push_back(LoadGroup{*flow.load, {i}, path});
  }
  if (!shared.flows.empty())
    groups.insert(groups.begin(), std::move(shared));
  uint64_t first_vu = 0;
  for (LoadGroup& group : groups) {
    group.first_vu = first_vu;
    first_vu += group.vuCount();
  }
  if (groups.size() > 1 && first_vu > uint64_t(kMaxUsers))
    fail(flows_field, "flows",
         "the flows' loads hold " + std::to_string(first_vu) +
             " virtual users (closed model) and iterations in flight (open model) together, "
             "more than the " +
             std::to_string(kMaxUsers) + " a run holds");
  return groups;
}

void Loader::fail(const YAML::Mark& mark, const std::string& path,
                  const std::string& message) const {
  // A problem under a path that --set replaced is the override's: its nodes have no place in
  // the file. The last override of a path is the one that stands.
  for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it)
    if (pathWithin(path, it->path))
      throw ConfigError("--set " + it->text, 0, 0, path, message);
  // Above it, only where --set created the key (nodes it made have no place at all).
  if (mark.is_null())
    for (auto it = overrides_.rbegin(); it != overrides_.rend(); ++it)
      if (pathWithin(it->path, path))
        throw ConfigError("--set " + it->text, 0, 0, path, message);
  const int line = mark.is_null() ? 0 : mark.line + 1;
  const int column = mark.is_null() ? 0 : mark.column + 1;
  throw ConfigError(file_, line, column, path, message);
}

void Loader::fail(const Field& f, const std::string& path, const std::string& message) const {
  fail(f.value.IsNull() ? f.key.Mark() : f.value.Mark(), path, message);
}

Fields Loader::checkKeys(const YAML::Node& map, const std::string& path,
                         std::span<const std::string_view> known) const {
  Fields fields;
  for (const auto& kv : map) {
    const YAML::Node& key = kv.first;
    if (!key.IsScalar())
      fail(key.Mark(), path, "keys must be plain names, got " + describe(key));
    const std::string name = key.Scalar();
    const std::string key_path = join(path, name);
    if (fields.find(name) != nullptr)
      fail(key.Mark(), key_path, "duplicate key '" + name + "'");
    if (std::find(known.begin(), known.end(), name) == known.end())
      fail(key.Mark(), key_path, "unknown key '" + name + "'" + didYouMean(name, known));
    fields.add(Field{name, key, kv.second});
  }
  return fields;
}

Fields Loader::checkKeys(const YAML::Node& map, const std::string& path,
                         std::initializer_list<std::string_view> known) const {
  return checkKeys(map, path, std::span<const std::string_view>(known.begin(), known.size()));
}

void Loader::requireKeys(const YAML::Node& map, const std::string& path, const Fields& fields,
                         std::initializer_list<std::string_view> required) const {
  for (std::string_view name : required)
    if (fields.find(name) == nullptr)
      fail(map.Mark(), join(path, name), "required key '" + std::string(name) + "' is missing");
}

Fields Loader::mapping(const Field& f, const std::string& path,
                       std::initializer_list<std::string_view> known) const {
  if (!f.value.IsMap())
    fail(f, path, "expected a mapping, got " + describe(f.value));
  return checkKeys(f.value, path, known);
}

std::string Loader::string(const Field& f, const std::string& path) const {
  if (!f.value.IsScalar())
    fail(f, path, "expected a string, got " + describe(f.value));
  return f.value.Scalar();
}

std::string Loader::nonEmptyString(const Field& f, const std::string& path) const {
  std::string value = string(f, path);
  if (value.empty())
    fail(f, path, "must not be empty");
  return value;
}

YAML::Mark Loader::markOf(const Field& f) {
  return f.value.IsNull() ? f.key.Mark() : f.value.Mark();
}

int64_t Loader::integer(const YAML::Node& node, const YAML::Mark& mark, const std::string& path,
                        const std::string& expected) const {
  if (node.IsScalar()) {
    const std::string& text = node.Scalar();
    int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc::result_out_of_range)
      fail(mark, path, std::string(text[0] == '-' ? "too small" : "too large") + ": " + text);
    if (ec == std::errc() && ptr == text.data() + text.size() && !text.empty())
      return value;
  }
  fail(mark, path, "expected " + expected + ", got " + describe(node));
}

int Loader::positiveInt(const Field& f, const std::string& path) const {
  const int64_t value = integer(f.value, markOf(f), path, "an integer");
  if (value <= 0)
    fail(markOf(f), path, "must be a positive integer, got " + std::to_string(value));
  if (value > std::numeric_limits<int>::max())
    fail(markOf(f), path,
         "too large: at most " + std::to_string(std::numeric_limits<int>::max()) + ", got " +
             std::to_string(value));
  return static_cast<int>(value);
}

void Loader::checkUsers(int64_t value, const YAML::Mark& mark, const std::string& path,
                        const std::string& what) const {
  if (value > kMaxUsers)
    fail(mark, path,
         "too large: at most " + std::to_string(kMaxUsers) + " " + what + " per run, and " +
             std::to_string(kMaxUsersPerWorker) +
             " per worker (each holds a connection and its buffers), got " + std::to_string(value));
}

uint64_t Loader::positiveCount(const Field& f, const std::string& path) const {
  const int64_t value = integer(f.value, markOf(f), path, "an integer");
  if (value <= 0)
    fail(markOf(f), path, "must be a positive integer, got " + std::to_string(value));
  return static_cast<uint64_t>(value);
}

double Loader::positiveNumber(const Field& f, const std::string& path) const {
  if (f.value.IsScalar()) {
    const std::string& text = f.value.Scalar();
    double value = 0;
    const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && ptr == text.data() + text.size() && std::isfinite(value)) {
      if (value <= 0)
        fail(f, path, "must be greater than 0, got " + text);
      return value;
    }
  }
  fail(f, path, "expected a number, got " + describe(f.value));
}

bool Loader::boolean(const Field& f, const std::string& path) const {
  bool value = false;
  if (!f.value.IsScalar() || !YAML::convert<bool>::decode(f.value, value))
    fail(f, path, "expected true or false, got " + describe(f.value));
  return value;
}

microseconds Loader::duration(const Field& f, const std::string& path, bool positive) const {
  if (!f.value.IsScalar())
    fail(f, path, "expected a duration like 250ms, 5s, 10m or 2h, got " + describe(f.value));
  const std::string& text = f.value.Scalar();
  if (!text.empty() && text.front() == '-')
    fail(f, path, "a duration cannot be negative, got " + quoteValue(text));
  const auto d = parseDuration(text);
  if (!d)
    fail(f, path, "expected a duration like 250ms, 5s, 10m or 2h, got " + quoteValue(text));
  if (positive && d->count() <= 0)
    fail(f, path, "must be greater than 0, got " + quoteValue(text));
  return *d;
}

double Loader::rate(const Field& f, const std::string& path, bool zero_ok) const {
  constexpr const char* kExpected = "expected a rate like 500/s or 30/m, got ";
  if (!f.value.IsScalar())
    fail(f, path, kExpected + describe(f.value));
  const std::string& text = f.value.Scalar();
  if (!text.empty() && text.front() == '-')
    fail(f, path, "a rate cannot be negative, got " + quoteValue(text));
  const auto r = parseRate(text);
  if (!r) {
    const bool bare = !text.empty() && text.find('/') == std::string::npos &&
                      std::isdigit(static_cast<unsigned char>(text[0]));
    fail(f, path,
         kExpected + quoteValue(text) +
             (bare ? " (a rate needs a unit: " + text + "/s)" : " (per s, m or h)"));
  }
  if (*r <= 0 && !zero_ok)
    fail(f, path, "must be greater than 0, got " + quoteValue(text));
  return *r;
}

ThinkTime Loader::think(const Field& f, const std::string& path) const {
  constexpr const char* kExpected =
      "expected a duration like 250ms, a range like 100ms..500ms or exp(200ms), got ";
  if (!f.value.IsScalar())
    fail(f, path, kExpected + describe(f.value));
  const std::string& text = f.value.Scalar();
  ThinkTime t;
  if (text.rfind("exp(", 0) == 0) {
    const std::string_view mean = text.back() == ')'
                                      ? trim(std::string_view(text).substr(4, text.size() - 5))
                                      : std::string_view();
    const auto d = parseDuration(mean);
    if (!d)
      fail(f, path,
           "expected exp(MEAN) with a duration for the mean, like exp(200ms), got " +
               quoteValue(text));
    if (d->count() <= 0)
      fail(f, path, "the mean of exp(...) must be greater than 0, got " + quoteValue(text));
    t.kind = ThinkTime::Kind::Exponential;
    t.a = *d;
    return t;
  }
  auto one = [&](std::string_view part) {
    if (!part.empty() && part.front() == '-')
      fail(f, path, "a think time cannot be negative, got " + quoteValue(text));
    const auto d = parseDuration(part);
    if (!d)
      fail(f, path, kExpected + quoteValue(text));
    return *d;
  };
  const size_t dots = text.find("..");
  if (dots == std::string::npos) {
    t.kind = ThinkTime::Kind::Fixed;
    t.a = one(text);
  } else {
    t.kind = ThinkTime::Kind::Uniform;
    t.a = one(std::string_view(text).substr(0, dots));
    t.b = one(std::string_view(text).substr(dots + 2));
    if (t.a > t.b)
      fail(f, path, "the low end of " + quoteValue(text) + " is above the high end");
  }
  return t;
}

YAML::Mark Loader::markAt(const YAML::Node& scalar, size_t offset) const {
  YAML::Mark mark = scalar.Mark();
  if (mark.is_null() || mark.pos < 0 || size_t(mark.pos) >= text_.size())
    return mark;
  size_t start = size_t(mark.pos);
  if (text_[start] == '"' || text_[start] == '\'')
    ++start;
  const std::string& value = scalar.Scalar();
  if (offset > value.size() || start + offset > text_.size())
    return mark;
  const std::string_view before = std::string_view(value).substr(0, offset);
  if (before.find('\n') != std::string_view::npos ||
      std::string_view(text_).substr(start, offset) != before)
    return mark;
  mark.column += int(start - size_t(mark.pos) + offset);
  return mark;
}

} // namespace stampede::common::scenario_loader

namespace stampede::common {

bool Expect::allows(int code) const {
  if (status.empty())
    return code >= 100 && code < 400;
  return std::find(status.begin(), status.end(), code) != status.end();
}

Scenario loadScenarioText(const std::string& yaml_text, const std::string& file_name,
                          const LoadOptions& options) {
  YAML::Node root = parseDocument(yaml_text, file_name);
  if (root.IsNull())
    throw ConfigError(file_name, 0, 0, "", "empty scenario");
  try {
    return scenario_loader::Loader(file_name, yaml_text, options).load(root);
  } catch (const YAML::Exception& e) {
    // Not expected (the loader checks types before converting), but never let a yaml-cpp
    // exception escape as anything but a ConfigError.
    yamlError(file_name, e);
  }
}

Scenario loadScenarioFile(const std::string& path, const LoadOptions& options) {
  std::string problem;
  const auto text = readWholeFile(path, kMaxScenarioBytes, "a scenario file", problem);
  if (!text)
    throw ConfigError(path, 0, 0, "", "cannot read file: " + problem);
  return loadScenarioText(*text, path, options);
}

} // namespace stampede::common
