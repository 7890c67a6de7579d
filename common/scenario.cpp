#include "common/scenario.h"

#include "common/config_error.h"
#include "common/csv.h"
#include "common/files.h"
#include "common/overrides.h"
#include "common/text.h"
#include "common/units.h"
#include "common/yaml_document.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <span>
#include <sstream>
#include <unistd.h>
#include <unordered_map>
#include <unordered_set>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace stampede::common {

bool Expect::allows(int code) const {
  if (status.empty())
    return code >= 100 && code < 400;
  return std::find(status.begin(), status.end(), code) != status.end();
}

// ---------------------------------------------------------------------------------------------
// Helpers of the loader: words and the environment

namespace {

constexpr int kMaxLoopDepth = 16; // deeper is a mistake, and bounds the engine's recursion

constexpr std::string_view kMethods[] = {"get",    "post", "put",    "patch",
                                         "delete", "head", "options"};

constexpr std::string_view kStepKeys[] = {
    "get",  "post",    "put",   "patch", "delete", "head", "options", "think",  "loop",   "steps",
    "name", "headers", "query", "body",  "json",   "form", "timeout", "expect", "capture"};

constexpr std::string_view kActionList =
    "get, post, put, patch, delete, head, options, think or loop";

bool isIdentifier(std::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return isAlnum(c) || c == '_'; });
}

bool isMethod(std::string_view name) {
  return std::find(std::begin(kMethods), std::end(kMethods), name) != std::end(kMethods);
}

// RFC 9110 token characters.
bool isHeaderName(std::string_view name) {
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return isAlnum(c) || kExtra.find(c) != std::string_view::npos;
  });
}
// The process environment with --env-file values over it: what env() reads on the master.
std::map<std::string, std::string>
environmentWith(const std::map<std::string, std::string>& overlay) {
  std::map<std::string, std::string> out;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text(*entry);
    const size_t eq = text.find('=');
    if (eq != std::string_view::npos)
      out.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  for (const auto& [name, value] : overlay)
    out[name] = value;
  return out;
}

} // namespace

// ---------------------------------------------------------------------------------------------
// The loader

namespace {

// One `key: value` of a mapping; the key node is kept for its position.
struct Field {
  std::string name;
  YAML::Node key;
  YAML::Node value;
};

class Fields {
public:
  void add(Field f) { fields_.push_back(std::move(f)); }
  const Field* find(std::string_view name) const {
    for (const auto& f : fields_)
      if (f.name == name)
        return &f;
    return nullptr;
  }
  const std::vector<Field>& all() const { return fields_; }

private:
  std::vector<Field> fields_; // in document order, so that errors come in reading order
};

// A word a key accepts, and what it means.
template <typename E> struct Choice {
  std::string_view word;
  E value;
};

class Loader {
public:
  Loader(const std::string& file, const std::string& text, const LoadOptions& options)
      : file_(file), text_(text), options_(options) {
    // A worker reads only what the master shipped; the master reads --env-file values first.
    if (options.shipped_env != nullptr) {
      env_.shipped = options.shipped_env;
    } else if (options.env_overlay != nullptr) {
      environment_ = environmentWith(*options.env_overlay);
      env_.shipped = &environment_;
    }
    env_.used = &env_used_;
  }

  Scenario load(YAML::Node root) {
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

    const Fields top = checkKeys(
        root, "", {"name", "target", "load", "halt", "http", "variables", "data", "flows"});
    requireKeys(root, "", top, {"name", "target", "load", "flows"});

    s.name = string(*top.find("name"), "name");
    if (s.name.empty())
      fail(*top.find("name"), "name", "must not be empty");
    s.target = target(*top.find("target"));
    s.load = loadSpec(*top.find("load"));
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
    s.flows = flows(*top.find("flows"));
    // After the flows: thresholds may name steps.
    if (const Field* f = top.find("halt"))
      s.halt = halt(*f);
    s.data = std::move(feeders_);
    s.slots = slots_;
    s.step_table = std::move(step_table_);
    s.env = env_used_;
    s.files = std::move(files_);
    return s;
  }

private:
  // What the loader knows of one slot: its name and whether a feeder fills it.
  struct SlotInfo {
    std::string name;
    int feeder = -1; // index into feeders_, or -1 for a capture
  };
  // A `capture:` name as written in a flow, found before the flows are loaded.
  struct CaptureSite {
    std::string name;
    YAML::Mark mark;
  };
  // The flow being loaded: what its steps have captured so far, and the feeders it reads.
  struct FlowScope {
    size_t index = 0;
    std::unordered_set<uint32_t> captured; // slots (a set: sized by the flow, not the scenario)
    std::set<uint32_t> feeders;
    std::optional<size_t> first_request;
  };

  // ------------------------------------------------------------------------------------------
  // Errors

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& path,
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
  // At the value, except when there is none: then at its key, which is where the eye goes.
  [[noreturn]] void fail(const Field& f, const std::string& path,
                         const std::string& message) const {
    fail(f.value.IsNull() ? f.key.Mark() : f.value.Mark(), path, message);
  }

  // ------------------------------------------------------------------------------------------
  // Shapes and scalars

  // Checks the keys of a mapping and returns its fields. Refuses duplicates and unknown keys
  // (with a suggestion).
  Fields checkKeys(const YAML::Node& map, const std::string& path,
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
  Fields checkKeys(const YAML::Node& map, const std::string& path,
                   std::initializer_list<std::string_view> known) const {
    return checkKeys(map, path, std::span<const std::string_view>(known.begin(), known.size()));
  }

  void requireKeys(const YAML::Node& map, const std::string& path, const Fields& fields,
                   std::initializer_list<std::string_view> required) const {
    for (std::string_view name : required)
      if (fields.find(name) == nullptr)
        fail(map.Mark(), join(path, name), "required key '" + std::string(name) + "' is missing");
  }

  Fields mapping(const Field& f, const std::string& path,
                 std::initializer_list<std::string_view> known) const {
    if (!f.value.IsMap())
      fail(f, path, "expected a mapping, got " + describe(f.value));
    return checkKeys(f.value, path, known);
  }

  std::string string(const Field& f, const std::string& path) const {
    if (!f.value.IsScalar())
      fail(f, path, "expected a string, got " + describe(f.value));
    return f.value.Scalar();
  }

  std::string nonEmptyString(const Field& f, const std::string& path) const {
    std::string value = string(f, path);
    if (value.empty())
      fail(f, path, "must not be empty");
    return value;
  }

  static YAML::Mark markOf(const Field& f) {
    return f.value.IsNull() ? f.key.Mark() : f.value.Mark();
  }

  int64_t integer(const YAML::Node& node, const YAML::Mark& mark, const std::string& path,
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

  int positiveInt(const Field& f, const std::string& path) const {
    const int64_t value = integer(f.value, markOf(f), path, "an integer");
    if (value <= 0)
      fail(markOf(f), path, "must be a positive integer, got " + std::to_string(value));
    if (value > std::numeric_limits<int>::max())
      fail(markOf(f), path,
           "too large: at most " + std::to_string(std::numeric_limits<int>::max()) + ", got " +
               std::to_string(value));
    return static_cast<int>(value);
  }

  // A number of virtual users, or of iterations in flight (each holds one): at most kMaxUsers.
  void checkUsers(int64_t value, const YAML::Mark& mark, const std::string& path,
                  const std::string& what) const {
    if (value > kMaxUsers)
      fail(mark, path,
           "too large: at most " + std::to_string(kMaxUsers) + " " + what + " per run, and " +
               std::to_string(kMaxUsersPerWorker) +
               " per worker (each holds a connection and its buffers), got " +
               std::to_string(value));
  }

  uint64_t positiveCount(const Field& f, const std::string& path) const {
    const int64_t value = integer(f.value, markOf(f), path, "an integer");
    if (value <= 0)
      fail(markOf(f), path, "must be a positive integer, got " + std::to_string(value));
    return static_cast<uint64_t>(value);
  }

  double positiveNumber(const Field& f, const std::string& path) const {
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

  bool boolean(const Field& f, const std::string& path) const {
    bool value = false;
    if (!f.value.IsScalar() || !YAML::convert<bool>::decode(f.value, value))
      fail(f, path, "expected true or false, got " + describe(f.value));
    return value;
  }

  // A duration >= 0, or > 0 when `positive`.
  microseconds duration(const Field& f, const std::string& path, bool positive) const {
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

  // Arrivals per second from "500/s", "30/m" or "2/h"; > 0 unless `zero_ok`.
  double rate(const Field& f, const std::string& path, bool zero_ok) const {
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

  template <typename E>
  E choice(const Field& f, const std::string& path,
           std::initializer_list<Choice<E>> choices) const {
    const std::string value = string(f, path);
    std::vector<std::string_view> words;
    for (const auto& c : choices) {
      if (c.word == value)
        return c.value;
      words.push_back(c.word);
    }
    std::string list;
    for (size_t i = 0; i < words.size(); ++i)
      list += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + std::string(words[i]);
    fail(f, path, "expected " + list + ", got " + quoteValue(value) + didYouMean(value, words));
  }

  ThinkTime think(const Field& f, const std::string& path) const {
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

  // Where an error at byte `offset` of a scalar's value is in the file: exact when the value
  // is written on one line without escapes before that byte, else the scalar's start.
  YAML::Mark markAt(const YAML::Node& scalar, size_t offset) const {
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

  // The offset of the first `{{ name` in a template's text, for pointing at a use of a slot.
  static size_t nameOffset(std::string_view source, std::string_view name) {
    for (size_t open = source.find("{{"); open != std::string_view::npos;
         open = source.find("{{", open + 2)) {
      size_t at = open + 2;
      while (at < source.size() && std::isspace(static_cast<unsigned char>(source[at])))
        ++at;
      if (source.substr(at, name.size()) == name) {
        const size_t after = at + name.size();
        if (after >= source.size() ||
            !(isAlnum(source[after]) || source[after] == '_' || source[after] == '.'))
          return at;
      }
    }
    return 0;
  }

  // ------------------------------------------------------------------------------------------
  // Templates and slots

  Template compileScalar(const YAML::Node& scalar, const std::string& path) {
    Template t;
    try {
      t = Template::compile(scalar.Scalar(), variables_, env_, &slots_);
    } catch (const TemplateError& e) {
      fail(markAt(scalar, e.offset()), path, e.what());
    }
    useSlots(t, path, [&](uint32_t slot) {
      return markAt(scalar, nameOffset(t.source(), slot_info_[slot].name));
    });
    return t;
  }

  // Checks the slots a template reads: a capture must have been captured by an earlier step of
  // the flow; a data column is always there, and makes the flow draw from its feeder.
  template <typename MarkOf>
  void useSlots(const Template& t, const std::string& path, MarkOf mark_of) {
    for (uint32_t slot : t.slotsUsed()) {
      const SlotInfo& info = slot_info_[slot];
      if (info.feeder >= 0) {
        if (scope_ != nullptr)
          scope_->feeders.insert(uint32_t(info.feeder));
        continue;
      }
      if (scope_ == nullptr) // http.headers: sent with every request, the first ones too
        fail(mark_of(slot), path,
             "'" + info.name +
                 "' is a captured value, which the first requests of a virtual user do not have; "
                 "set this header on the steps that come after the capture");
      if (scope_->captured.count(slot) == 0)
        fail(mark_of(slot), path, usedBeforeCapture(info.name));
    }
  }

  std::string usedBeforeCapture(const std::string& name) const {
    for (const CaptureSite& site : flow_captures_[scope_->index])
      if (site.name == name)
        return "'" + name + "' is used before any step captures it (it is captured at line " +
               std::to_string(site.mark.line + 1) + ")";
    std::string message = "'" + name + "' is used but no step of this flow captures it";
    for (size_t k = 0; k < flow_captures_.size(); ++k)
      for (const CaptureSite& site : flow_captures_[k])
        if (site.name == name)
          return message + " (" + indexed("flows", k) + " does, at line " +
                 std::to_string(site.mark.line + 1) +
                 "; a flow cannot count on another having run before it)";
    return message;
  }

  // The template's text starts with `{{ capture }}` or `{{ feeder.column }}`.
  bool beginsWithSlot(const Template& t) const {
    const std::string_view source = t.source();
    if (source.substr(0, 2) != "{{")
      return false;
    size_t first_name = 2;
    while (first_name < source.size() &&
           std::isspace(static_cast<unsigned char>(source[first_name])))
      ++first_name;
    return std::any_of(t.slotsUsed().begin(), t.slotsUsed().end(), [&](uint32_t slot) {
      return nameOffset(source, slot_info_[slot].name) == first_name;
    });
  }

  uint32_t addSlot(const std::string& name, int feeder) {
    const auto [it, inserted] = slots_.emplace(name, uint32_t(slot_info_.size()));
    if (inserted)
      slot_info_.push_back(SlotInfo{name, feeder});
    return it->second;
  }

  // Why `name` cannot be a capture's, or "" when it can.
  std::string captureNameProblem(const std::string& name) const {
    if (!isIdentifier(name))
      return "a capture name is letters, digits and _, not starting with a digit";
    if (isBuiltinName(name))
      return "'" + name + "' is a built-in name; choose another";
    if (variables_.count(name))
      return "'" + name + "' is already a variable; a capture needs a name of its own";
    for (const Feeder& feeder : feeders_)
      if (feeder.name == name)
        return "'" + name + "' is already a data feeder; a capture needs a name of its own";
    return "";
  }

  // The mapping value of `key` in `map`, or an undefined node; never creates anything.
  static YAML::Node child(const YAML::Node& map, std::string_view key) {
    if (map.IsMap())
      for (const auto& kv : map)
        if (kv.first.IsScalar() && kv.first.Scalar() == key)
          return kv.second;
    return YAML::Node(YAML::NodeType::Undefined);
  }

  // Gives every well-formed capture name a slot and notes where each flow captures what.
  // Malformed input is left for the flows pass to report in reading order.
  void scanCaptures(const YAML::Node& flows) {
    if (!flows.IsSequence())
      return;
    flow_captures_.assign(flows.size(), {});
    for (size_t i = 0; i < flows.size(); ++i)
      scanSteps(child(flows[i], "steps"), i);
  }

  void scanSteps(const YAML::Node& steps, size_t flow) {
    if (!steps.IsSequence())
      return;
    for (const auto& step : steps) {
      if (!step.IsMap())
        continue;
      for (const auto& kv : step) {
        if (!kv.first.IsScalar())
          continue;
        if (kv.first.Scalar() == "steps")
          scanSteps(kv.second, flow);
        if (kv.first.Scalar() != "capture" || !kv.second.IsMap())
          continue;
        for (const auto& capture : kv.second) {
          if (!capture.first.IsScalar() || !captureNameProblem(capture.first.Scalar()).empty())
            continue;
          addSlot(capture.first.Scalar(), -1);
          flow_captures_[flow].push_back(CaptureSite{capture.first.Scalar(), capture.first.Mark()});
        }
      }
    }
  }

  // A sample rendering, for checks on what a template will look like (URL shape). Slots
  // render empty.
  static std::string sample(const Template& t) {
    std::mt19937_64 rng(1);
    RenderContext ctx;
    ctx.rng = &rng;
    return t.render(ctx);
  }

  // ------------------------------------------------------------------------------------------
  // Files named by the scenario

  // The text of a file the scenario names: from the master's disk, relative to the scenario's
  // directory, or from what the master shipped (worker). Recorded in files_ for shipping.
  std::string namedFile(const Field& f, const std::string& path, const std::string& name) {
    if (options_.shipped_files != nullptr) {
      const auto it = options_.shipped_files->find(name);
      if (it == options_.shipped_files->end())
        fail(f, path, quoteValue(name) + " is not among the files the master shipped");
      files_[name] = it->second;
      return it->second;
    }
    std::filesystem::path where(name);
    if (where.is_relative())
      where = std::filesystem::path(file_).parent_path() / where;
    std::string problem;
    auto text = readWholeFile(where.string(), kMaxDataFileBytes, "a data or TLS file", problem);
    if (!text)
      fail(f, path, "cannot read " + quoteValue(where.string()) + ": " + problem);
    files_[name] = *text;
    return *text;
  }

  // ------------------------------------------------------------------------------------------
  // Top-level sections

  Endpoint target(const Field& f) const {
    const std::string text = string(f, "target");
    if (text.find("{{") != std::string::npos)
      fail(f, "target", "must be a literal URL; templates are not allowed here");
    auto endpoint = parseEndpoint(text);
    if (!endpoint)
      fail(f, "target",
           "expected an http:// or https:// URL like http://127.0.0.1:8080, got " +
               quoteValue(text));
    return *endpoint;
  }

  LoadSpec loadSpec(const Field& f) const {
    const Fields fields = mapping(
        f, "load", {"users", "rate", "ramp", "duration", "stages", "iterations", "max_in_flight"});
    LoadSpec spec;
    if (const Field* stages = fields.find("stages")) {
      for (const Field& other : fields.all())
        if (other.name == "users" || other.name == "rate" || other.name == "ramp" ||
            other.name == "duration")
          fail(other.key.Mark(), join("load", other.name),
               "'" + other.name +
                   "' cannot be used with stages: the stages set every level and how long it "
                   "lasts ({to: N, over: D} for users, {to: N/s, over: D} for a rate, {hold: D})");
      spec.stages = stageList(*stages, spec.model);
      spec.stages_written = true;
      if (spec.total().count() <= 0)
        fail(*stages, "load.stages", "the stages last 0s in total");
      if (spec.peak() <= 0)
        fail(*stages, "load.stages",
             std::string("no stage goes above 0") +
                 (spec.model == LoadSpec::Model::Closed ? " users" : "/s"));
      if (spec.model == LoadSpec::Model::Closed)
        spec.users = static_cast<int>(std::ceil(spec.peak()));
      else
        spec.rate = spec.peak();
    } else {
      const Field* users = fields.find("users");
      const Field* open = fields.find("rate");
      if (users && open) {
        const Field& second = users->key.Mark().pos > open->key.Mark().pos ? *users : *open;
        fail(second.key.Mark(), join("load", second.name),
             "use either users (closed model) or rate (open model), not both");
      }
      if (!users && !open)
        fail(f.value.Mark(), "load.users",
             "required key 'users' is missing (or rate: for the open model, or stages:)");
      double level = 0;
      if (users) {
        spec.model = LoadSpec::Model::Closed;
        const int64_t count = integer(users->value, markOf(*users), "load.users", "an integer");
        if (count <= 0)
          fail(markOf(*users), "load.users",
               "must be a positive integer, got " + std::to_string(count));
        checkUsers(count, markOf(*users), "load.users", "virtual users");
        spec.users = static_cast<int>(count);
        level = spec.users;
      } else {
        spec.model = LoadSpec::Model::Open;
        spec.rate = rate(*open, "load.rate", false);
        level = spec.rate;
      }
      if (const Field* ramp = fields.find("ramp"))
        spec.ramp = duration(*ramp, "load.ramp", false);
      const Field* hold = fields.find("duration");
      if (hold == nullptr)
        fail(f.value.Mark(), "load.duration",
             "required key 'duration' is missing (or write stages: instead)");
      spec.duration = duration(*hold, "load.duration", true);
      if (spec.ramp > microseconds::max() - spec.duration)
        fail(*hold, "load.duration", "ramp and duration together are too long");
      // The engine reads only stages: the ramp (kept when 0s, a step to the level), then hold.
      spec.stages = {Stage{false, level, spec.ramp}, Stage{true, 0, spec.duration}};
      spec.stages_written = false;
    }
    if (const Field* iterations = fields.find("iterations"))
      spec.iterations = positiveCount(*iterations, "load.iterations");
    if (const Field* cap = fields.find("max_in_flight")) {
      if (spec.model == LoadSpec::Model::Closed)
        fail(cap->key.Mark(), "load.max_in_flight",
             "max_in_flight belongs to the open model (rate: or stages in N/s); in the closed "
             "model the users are the cap");
      spec.max_in_flight = positiveCount(*cap, "load.max_in_flight");
      checkUsers(int64_t(spec.max_in_flight), markOf(*cap), "load.max_in_flight",
                 "iterations in flight");
    } else if (spec.model == LoadSpec::Model::Open) {
      spec.max_in_flight = kDefaultMaxInFlight;
    }
    return spec;
  }

  std::vector<Stage> stageList(const Field& f, LoadSpec::Model& model) const {
    if (!f.value.IsSequence() || f.value.size() == 0)
      fail(f, "load.stages",
           "expected a non-empty list of stages like {to: 100/s, over: 1m} or {hold: 5m}, got " +
               describe(f.value));
    std::vector<Stage> out;
    std::string model_path; // the stage that set the model
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      const std::string path = indexed("load.stages", i);
      if (!node.IsMap())
        fail(node.Mark(), path,
             "a stage is {to: LEVEL, over: DURATION} or {hold: DURATION}, got " + describe(node));
      const Fields fields = checkKeys(node, path, {"to", "over", "hold"});
      Stage stage;
      if (const Field* hold = fields.find("hold")) {
        for (const Field& other : fields.all())
          if (other.name != "hold")
            fail(other.key.Mark(), join(path, other.name),
                 "a hold stage has only hold: (it keeps the level reached), e.g. {hold: 5m}");
        stage.hold = true;
        stage.over = duration(*hold, join(path, "hold"), true);
        out.push_back(stage);
        checkTotal(out, *hold, join(path, "hold"));
        continue;
      }
      if (fields.all().empty())
        fail(node.Mark(), path, "a stage is {to: LEVEL, over: DURATION} or {hold: DURATION}");
      requireKeys(node, path, fields, {"to", "over"});
      const Field& to = *fields.find("to");
      const std::string to_path = join(path, "to");
      LoadSpec::Model this_model = LoadSpec::Model::Closed;
      if (to.value.IsScalar() && to.value.Scalar().find('/') != std::string::npos) {
        this_model = LoadSpec::Model::Open;
        stage.to = rate(to, to_path, true);
      } else {
        const int64_t users =
            integer(to.value, markOf(to), to_path,
                    "a number of users (closed model, like 50) or a rate (open model, like 100/s)");
        if (users < 0)
          fail(to, to_path, "a number of users cannot be negative, got " + std::to_string(users));
        checkUsers(users, markOf(to), to_path, "virtual users");
        stage.to = double(users);
      }
      if (model_path.empty()) {
        model = this_model;
        model_path = to_path;
      } else if (this_model != model) {
        auto what = [](LoadSpec::Model m) {
          return m == LoadSpec::Model::Closed ? std::string("users (closed model)")
                                              : std::string("a rate (open model)");
        };
        fail(to, to_path,
             "this stage's level is " + what(this_model) + " but " + model_path + " is " +
                 what(model) + "; all stages use one model");
      }
      stage.over = duration(*fields.find("over"), join(path, "over"), false);
      out.push_back(stage);
      checkTotal(out, *fields.find("over"), join(path, "over"));
    }
    if (model_path.empty())
      fail(f, "load.stages", "no stage sets a level: start with {to: N, over: D}");
    return out;
  }

  // The stages' durations add up without overflowing (LoadSpec::total() sums them).
  void checkTotal(const std::vector<Stage>& stages, const Field& f, const std::string& path) const {
    microseconds total{0};
    for (const Stage& s : stages) {
      if (s.over > microseconds::max() - total)
        fail(f, path, "the stages together are too long");
      total += s.over;
    }
  }

  HaltSpec halt(const Field& f) const {
    const Fields fields = mapping(f, "halt", {"on_error", "on_worker_lost", "thresholds"});
    HaltSpec spec;
    if (const Field* on_error = fields.find("on_error"))
      onError(*on_error, spec);
    if (const Field* lost = fields.find("on_worker_lost")) {
      const std::string value = string(*lost, "halt.on_worker_lost");
      if (value == "halt")
        spec.on_worker_lost = HaltSpec::OnWorkerLost::Halt;
      else if (value == "continue")
        spec.on_worker_lost = HaltSpec::OnWorkerLost::Continue;
      else
        fail(*lost, "halt.on_worker_lost",
             "expected halt or continue, got " + quoteValue(value) +
                 didYouMean(value, {"halt", "continue"}));
    }
    if (const Field* list = fields.find("thresholds"))
      spec.thresholds = thresholds(*list);
    return spec;
  }

  void onError(const Field& f, HaltSpec& spec) const {
    const std::string path = "halt.on_error";
    if (f.value.IsMap()) {
      const Fields policy = mapping(f, path, {"count", "rate", "window"});
      if (const Field* count = policy.find("count")) {
        if (policy.find("rate") || policy.find("window"))
          fail(*count, path + ".count",
               "count stands alone: use {count: N} or {rate: X%, window: D}");
        spec.on_error = HaltSpec::OnError::Count;
        spec.error_count = static_cast<uint64_t>(positiveInt(*count, path + ".count"));
        return;
      }
      const Field* rate = policy.find("rate");
      if (!rate)
        fail(f, path, "expected {count: N} or {rate: X%, window: D}");
      const std::string text = string(*rate, path + ".rate");
      double value = 0;
      const bool percent = !text.empty() && text.back() == '%';
      const std::string_view digits(text.data(), text.size() - (percent ? 1 : 0));
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
      if (!percent || ec != std::errc() || ptr != digits.data() + digits.size() || value <= 0 ||
          value > 100)
        fail(*rate, path + ".rate",
             "expected a percentage above 0 such as 1%, got " + quoteValue(text));
      spec.on_error = HaltSpec::OnError::Rate;
      spec.error_rate = value / 100.0;
      if (const Field* window = policy.find("window"))
        spec.error_window = duration(*window, path + ".window", true);
      return;
    }
    const std::string value = string(f, path);
    if (value == "first")
      spec.on_error = HaltSpec::OnError::First;
    else if (value == "never")
      spec.on_error = HaltSpec::OnError::Never;
    else
      fail(f, path,
           "expected first, never, {count: N} or {rate: X%, window: D}, got " + quoteValue(value) +
               didYouMean(value, {"first", "never"}));
  }

  std::vector<Threshold> thresholds(const Field& f) const {
    if (!f.value.IsSequence())
      fail(f, "halt.thresholds", "expected a list of expressions, got " + describe(f.value));
    std::vector<Threshold> out;
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node item = f.value[i];
      const std::string path = "halt.thresholds[" + std::to_string(i) + "]";
      std::optional<Fields> options;
      if (item.IsMap()) {
        options = checkKeys(item, path, {"expr", "window", "abort"});
        requireKeys(item, path, *options, {"expr"});
      }
      // Constructed, never assigned: assigning a yaml-cpp Node overwrites the node it refers to.
      const YAML::Node expr_node = options ? options->find("expr")->value : item;
      const std::string expr_path = item.IsMap() ? path + ".expr" : path;
      if (!expr_node.IsScalar())
        fail(expr_node.Mark(), expr_path,
             "expected an expression such as \"p99 < 250ms\", got " + describe(expr_node));
      std::string error;
      size_t offset = 0;
      auto threshold = parseThreshold(expr_node.Scalar(), error, offset);
      if (!threshold)
        fail(markAt(expr_node, offset), expr_path, error);
      if (!threshold->step.empty()) {
        if (stats_index_.count(threshold->step) == 0) {
          std::vector<std::string_view> names;
          for (const auto& row : step_table_)
            names.push_back(row.name);
          fail(expr_node.Mark(), expr_path,
               "no step is named " + quoteValue(threshold->step) +
                   didYouMean(threshold->step, names));
        }
      }
      if (options) {
        if (const Field* window = options->find("window"))
          threshold->window = duration(*window, path + ".window", true);
        if (const Field* abort = options->find("abort"))
          threshold->abort = boolean(*abort, path + ".abort");
      }
      out.push_back(std::move(*threshold));
    }
    return out;
  }

  std::map<std::string, std::string> variables(const Field& f) const {
    if (!f.value.IsMap())
      fail(f, "variables", "expected a mapping of names to values, got " + describe(f.value));
    std::map<std::string, std::string> out;
    for (const auto& kv : f.value) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string path = join("variables", name);
      if (!isIdentifier(name))
        fail(kv.first.Mark(), path,
             "a variable name is letters, digits and _, not starting with a digit");
      if (isBuiltinName(name))
        fail(kv.first.Mark(), path, "'" + name + "' is a built-in name; choose another");
      if (out.count(name))
        fail(kv.first.Mark(), path, "duplicate key '" + name + "'");
      const Field value{name, kv.first, kv.second};
      if (!kv.second.IsScalar())
        fail(value, path, "expected a plain value (string or number), got " + describe(kv.second));
      out[name] = kv.second.Scalar();
    }
    return out;
  }

  // `data:` feeders: each CSV read (or taken from what was shipped) and checked whole, and a
  // slot for each `feeder.column`.
  void data(const Field& f) {
    if (!f.value.IsMap())
      fail(f, "data",
           "expected a mapping of feeder names to {csv: FILE, ...}, got " + describe(f.value));
    std::unordered_set<std::string> feeder_names;
    for (const auto& kv : f.value) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string path = join("data", name);
      if (!isIdentifier(name))
        fail(kv.first.Mark(), path,
             "a feeder name is letters, digits and _, not starting with a digit");
      if (isBuiltinName(name))
        fail(kv.first.Mark(), path, "'" + name + "' is a built-in name; choose another");
      if (variables_.count(name))
        fail(kv.first.Mark(), path,
             "'" + name + "' is already a variable; a feeder needs a name of its own");
      if (!feeder_names.insert(name).second)
        fail(kv.first.Mark(), path, "duplicate key '" + name + "'");
      const Field entry{name, kv.first, kv.second};
      if (!kv.second.IsMap())
        fail(entry, path,
             "expected a mapping like {csv: accounts.csv, order: sequence}, got " +
                 describe(kv.second));
      const Fields fields = checkKeys(kv.second, path, {"csv", "order", "split", "on_exhausted"});
      requireKeys(kv.second, path, fields, {"csv"});

      Feeder feeder;
      feeder.name = name;
      feeder.where = Location{kv.first.Mark().line + 1, kv.first.Mark().column + 1};
      const Field& csv = *fields.find("csv");
      const std::string csv_path = join(path, "csv");
      feeder.file = nonEmptyString(csv, csv_path);
      const std::string text = namedFile(csv, csv_path, feeder.file);
      CsvTable table;
      std::unordered_set<std::string> columns;
      if (auto problem = parseCsv(text, table))
        fail(csv, csv_path,
             feeder.file + ":" + std::to_string(problem->line) + ": " + problem->message);
      for (size_t c = 0; c < table.header.size(); ++c) {
        const std::string& column = table.header[c];
        const std::string where = feeder.file + ":1: ";
        if (column.empty())
          fail(csv, csv_path, where + "column " + std::to_string(c + 1) + " has no name");
        if (!isIdentifier(column))
          fail(csv, csv_path,
               where + "column " + quoteValue(column) +
                   " is not a name (letters, digits and _, not starting with a digit)");
        if (!columns.insert(column).second)
          fail(csv, csv_path, where + "duplicate column '" + column + "'");
      }
      if (table.rows.empty())
        fail(csv, csv_path, feeder.file + " has a header but no rows");
      feeder.columns = std::move(table.header);
      feeder.rows = std::move(table.rows);

      if (const Field* order = fields.find("order"))
        feeder.order = choice<Feeder::Order>(*order, join(path, "order"),
                                             {{"sequence", Feeder::Order::Sequence},
                                              {"random", Feeder::Order::Random},
                                              {"shuffle", Feeder::Order::Shuffle}});
      if (const Field* split = fields.find("split"))
        feeder.split = choice<Feeder::Split>(
            *split, join(path, "split"),
            {{"per_worker", Feeder::Split::PerWorker}, {"shared", Feeder::Split::Shared}});
      if (const Field* exhausted = fields.find("on_exhausted"))
        feeder.on_exhausted = choice<Feeder::OnExhausted>(*exhausted, join(path, "on_exhausted"),
                                                          {{"wrap", Feeder::OnExhausted::Wrap},
                                                           {"stop", Feeder::OnExhausted::Stop},
                                                           {"halt", Feeder::OnExhausted::Halt}});
      for (const std::string& column : feeder.columns)
        feeder.slots.push_back(addSlot(name + "." + column, int(feeders_.size())));
      feeders_.push_back(std::move(feeder));
    }
  }

  // Parses a `headers:` mapping into compiled templates, refusing names that are not tokens,
  // duplicates (case-insensitive, as HTTP compares them) and values with line breaks.
  std::vector<std::pair<std::string, Template>> headerMap(const Field& f, const std::string& path) {
    if (!f.value.IsMap())
      fail(f, path, "expected a mapping of header names to values, got " + describe(f.value));
    std::vector<std::pair<std::string, Template>> out;
    std::unordered_set<std::string> names; // lower case
    for (const auto& kv : f.value) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string header_path = join(path, name);
      if (!isHeaderName(name))
        fail(kv.first.Mark(), header_path, "not a valid header name");
      if (!names.insert(lower(name)).second)
        fail(kv.first.Mark(), header_path,
             "duplicate header '" + name + "' (header names ignore case)");
      const Field value{name, kv.first, kv.second};
      if (!kv.second.IsScalar())
        fail(value, header_path, "expected a string, got " + describe(kv.second));
      Template compiled = compileScalar(kv.second, header_path);
      const std::string rendered = sample(compiled);
      if (rendered.find_first_of("\r\n") != std::string::npos)
        fail(value, header_path, "a header value cannot contain line breaks");
      out.emplace_back(name, std::move(compiled));
    }
    return out;
  }

  HttpSpec http(const Field& f) {
    const Fields fields = mapping(f, "http",
                                  {"timeout", "version", "engine", "keep_alive", "follow_redirects",
                                   "max_body", "headers", "tls"});
    HttpSpec spec;
    if (const Field* timeout = fields.find("timeout"))
      spec.timeout = duration(*timeout, "http.timeout", true);
    if (const Field* version = fields.find("version")) {
      const std::string value = string(*version, "http.version");
      if (value == "1.1")
        spec.version = HttpSpec::Version::Http1;
      else if (value == "2")
        spec.version = HttpSpec::Version::Http2;
      else
        fail(*version, "http.version", "expected \"1.1\" or \"2\", got " + quoteValue(value));
    }
    const Field* engine = fields.find("engine");
    if (engine) {
      spec.engine = choice<HttpSpec::Engine>(
          *engine, "http.engine",
          {{"beast", HttpSpec::Engine::Beast}, {"curl", HttpSpec::Engine::Curl}});
    }
    if (spec.version == HttpSpec::Version::Http2) {
      if (engine && spec.engine == HttpSpec::Engine::Beast)
        fail(*engine, "http.engine", "beast speaks HTTP/1.1 only; use engine: curl for version 2");
      spec.engine = HttpSpec::Engine::Curl;
    }
    if (const Field* keep_alive = fields.find("keep_alive"))
      spec.keep_alive = boolean(*keep_alive, "http.keep_alive");
    if (const Field* follow = fields.find("follow_redirects"))
      spec.follow_redirects = boolean(*follow, "http.follow_redirects");
    if (const Field* max_body = fields.find("max_body")) {
      const auto bytes =
          max_body->value.IsScalar() ? parseByteSize(max_body->value.Scalar()) : std::nullopt;
      if (!bytes || *bytes == 0)
        fail(markOf(*max_body), "http.max_body",
             "expected a size > 0 in bytes, KiB, MiB or GiB (such as 64MiB), got " +
                 describe(max_body->value));
      spec.max_body = *bytes;
    }
    if (const Field* headers = fields.find("headers")) {
      for (auto& [name, value] : headerMap(*headers, "http.headers")) {
        // HttpSpec holds plain text; a header that changes per request or holds a secret is
        // pushed down into every request step instead (see request()), which keeps it
        // per-request and masked in reports.
        if (value.isConstant())
          spec.headers.emplace_back(name, sample(value));
        else
          dynamic_default_headers_.emplace_back(name, std::move(value));
      }
    }
    default_header_names_.clear();
    for (const auto& [name, value] : spec.headers)
      default_header_names_.push_back(name);
    for (const auto& [name, value] : dynamic_default_headers_)
      default_header_names_.push_back(name);
    if (const Field* tls = fields.find("tls"))
      spec.tls = tlsSpec(*tls);
    return spec;
  }

  TlsSpec tlsSpec(const Field& f) {
    const Fields fields = mapping(f, "http.tls", {"verify", "ca", "cert", "key"});
    TlsSpec spec;
    if (const Field* verify = fields.find("verify"))
      spec.verify = boolean(*verify, "http.tls.verify");
    const Field* cert = fields.find("cert");
    const Field* key = fields.find("key");
    if (cert && !key)
      fail(cert->key.Mark(), "http.tls.cert",
           "a client certificate needs its private key: add key: to http.tls");
    if (key && !cert)
      fail(key->key.Mark(), "http.tls.key",
           "a private key needs its client certificate: add cert: to http.tls");
    auto pem = [&](const Field* field, const char* name, std::string& file, std::string& text) {
      if (field == nullptr)
        return;
      const std::string path = std::string("http.tls.") + name;
      file = nonEmptyString(*field, path);
      text = namedFile(*field, path, file);
      if (text.find("-----BEGIN ") == std::string::npos)
        fail(*field, path, quoteValue(file) + " is not PEM (it has no -----BEGIN line)");
    };
    pem(fields.find("ca"), "ca", spec.ca_file, spec.ca_pem);
    pem(cert, "cert", spec.cert_file, spec.cert_pem);
    pem(key, "key", spec.key_file, spec.key_pem);
    return spec;
  }

  // ------------------------------------------------------------------------------------------
  // Flows and steps

  std::vector<Flow> flows(const Field& f) {
    if (!f.value.IsSequence() || f.value.size() == 0)
      fail(f, "flows", "expected a non-empty list of flows, got " + describe(f.value));
    std::vector<Flow> out;
    std::unordered_map<std::string, size_t> names; // to the flow that has the name
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      const std::string path = indexed("flows", i);
      if (!node.IsMap())
        fail(node.Mark(), path,
             "a flow is a mapping (name:, weight:, think:, steps:), got " + describe(node));
      const Fields fields = checkKeys(node, path, {"name", "weight", "think", "steps"});
      requireKeys(node, path, fields, {"steps"});
      Flow flow;
      flow.name = "flow " + std::to_string(i + 1);
      if (const Field* name = fields.find("name")) {
        flow.name = nonEmptyString(*name, join(path, "name"));
        const auto [it, inserted] = names.emplace(flow.name, i);
        if (!inserted)
          fail(*name, join(path, "name"),
               "duplicate flow name " + quoteValue(flow.name) + " (also " +
                   indexed("flows", it->second) + ")");
      } else {
        names.emplace(flow.name, i);
      }
      if (const Field* weight = fields.find("weight"))
        flow.weight = positiveNumber(*weight, join(path, "weight"));
      if (const Field* think_time = fields.find("think"))
        flow.think = think(*think_time, join(path, "think"));

      FlowScope scope;
      scope.index = i;
      scope_ = &scope;
      const Field& steps = *fields.find("steps");
      flow.steps = stepList(steps, join(path, "steps"), 0);
      scope_ = nullptr;
      if (!scope.first_request)
        fail(steps, join(path, "steps"),
             "a flow needs at least one request step (get, post, put, patch, delete, head or "
             "options)");
      flow.first_request_stats_index = *scope.first_request;
      flow.feeders.assign(scope.feeders.begin(), scope.feeders.end());
      out.push_back(std::move(flow));
    }
    return out;
  }

  std::vector<Step> stepList(const Field& f, const std::string& path, int depth) {
    if (!f.value.IsSequence() || f.value.size() == 0)
      fail(f, path, "expected a non-empty list of steps, got " + describe(f.value));
    std::vector<Step> out;
    for (size_t j = 0; j < f.value.size(); ++j)
      out.push_back(step(f.value[j], indexed(path, j), depth));
    return out;
  }

  Step step(const YAML::Node& node, const std::string& path, int depth) {
    if (!node.IsMap())
      fail(node.Mark(), path,
           "a step is a mapping like {get: /path}, {think: 1s} or {loop: 3, steps: [...]}, got " +
               describe(node));
    const Fields fields = checkKeys(node, path, kStepKeys);

    const Field* action = nullptr;
    for (const Field& f : fields.all()) {
      if (f.name != "think" && f.name != "loop" && !isMethod(f.name))
        continue;
      if (action != nullptr)
        fail(f.key.Mark(), join(path, f.name),
             "a step has exactly one of " + std::string(kActionList) + "; this one already has '" +
                 action->name + "'");
      action = &f;
    }
    if (action == nullptr)
      fail(node.Mark(), path, "a step needs one of " + std::string(kActionList));

    Step s;
    s.where = Location{node.Mark().line + 1, node.Mark().column + 1};
    if (action->name == "think") {
      refuseOthers(fields, path, {"think"}, "a think step");
      s.kind = Step::Kind::Think;
      s.think = think(*action, join(path, "think"));
    } else if (action->name == "loop") {
      refuseOthers(fields, path, {"loop", "steps"}, "a loop step");
      requireKeys(node, path, fields, {"steps"});
      if (depth + 1 > kMaxLoopDepth)
        fail(action->key.Mark(), join(path, "loop"),
             "loops nest at most " + std::to_string(kMaxLoopDepth) + " deep");
      s.kind = Step::Kind::Loop;
      s.loop_count = positiveInt(*action, join(path, "loop"));
      s.steps = stepList(*fields.find("steps"), join(path, "steps"), depth + 1);
    } else {
      refuseOthers(fields, path,
                   {action->name, "name", "headers", "query", "body", "json", "form", "timeout",
                    "expect", "capture"},
                   "a request step");
      request(s, *action, fields, path);
    }
    return s;
  }

  void refuseOthers(const Fields& fields, const std::string& path,
                    std::initializer_list<std::string_view> allowed,
                    const std::string& what) const {
    for (const Field& f : fields.all())
      if (std::find(allowed.begin(), allowed.end(), f.name) == allowed.end())
        fail(f.key.Mark(), join(path, f.name),
             "'" + f.name + "' does not belong in " + what +
                 (f.name == "steps" ? " (only a loop step has steps)" : ""));
  }

  void request(Step& s, const Field& action, const Fields& fields, const std::string& path) {
    s.kind = Step::Kind::Request;
    s.method = upper(action.name);
    const std::string url_path = join(path, action.name);
    if (!action.value.IsScalar())
      fail(action, url_path,
           "expected a path like /products or an absolute URL, got " + describe(action.value));
    s.url = compileScalar(action.value, url_path);
    const std::string url = sample(s.url);
    if (url.find_first_of(" \t\r\n") != std::string::npos)
      fail(action, url_path, "a URL cannot contain spaces or line breaks (encode a space as %20)");
    if (iequalsPrefix(url, "http://") || iequalsPrefix(url, "https://")) {
      s.url_absolute = true;
      // Only the scheme and authority must parse; the path may hold a query string.
      const std::string_view base = std::string_view(url).substr(0, url.find_first_of("?#"));
      if (!parseEndpoint(base))
        fail(action, url_path, "not a valid http:// or https:// URL: " + quoteValue(url));
    } else if (url.empty() || url.front() != '/') {
      if (beginsWithSlot(s.url))
        fail(action, url_path,
             "a URL cannot begin with a captured or data value: the loader must know whether it "
             "is a path or an absolute URL (write the fixed part first, like /{{...}})");
      fail(action, url_path,
           "expected a path starting with '/' or an absolute http:// or https:// URL, got " +
               quoteValue(url));
    }

    std::string stats_key = s.method + " " + s.url.source();
    if (const Field* name = fields.find("name"))
      stats_key = nonEmptyString(*name, join(path, "name"));

    if (const Field* query = fields.find("query"))
      s.query = templateMap(*query, join(path, "query"), "query parameter names to values");
    if (const Field* headers = fields.find("headers"))
      s.headers = headerMap(*headers, join(path, "headers"));

    // At most one body.
    const Field* body_field = nullptr;
    for (const Field& f : fields.all()) {
      if (f.name != "body" && f.name != "json" && f.name != "form")
        continue;
      if (body_field != nullptr)
        fail(f.key.Mark(), join(path, f.name),
             "use either " + body_field->name + " or " + f.name + ", not both");
      body_field = &f;
    }
    if (body_field && (s.method == "HEAD" || s.method == "OPTIONS"))
      fail(body_field->key.Mark(), join(path, body_field->name),
           std::string(s.method == "OPTIONS" ? "an " : "a ") + s.method + " request has no body");
    if (const Field* body = fields.find("body")) {
      if (!body->value.IsScalar())
        fail(*body, join(path, "body"),
             "expected a string, got " + describe(body->value) +
                 " (use json: for structured data)");
      s.body = compileScalar(body->value, join(path, "body"));
    }
    if (const Field* json = fields.find("json")) {
      s.body = jsonBody(*json, join(path, "json"));
      if (!hasHeader(s.headers, "Content-Type"))
        s.headers.emplace_back("Content-Type", Template::compile("application/json", {}));
    }
    if (const Field* form = fields.find("form")) {
      s.form = templateMap(*form, join(path, "form"), "form field names to values");
      if (s.form.empty())
        fail(*form, join(path, "form"),
             "expected at least one field (leave form: out to send no body)");
      if (!hasHeader(s.headers, "Content-Type"))
        s.headers.emplace_back("Content-Type",
                               Template::compile("application/x-www-form-urlencoded", {}));
    }
    if (const Field* timeout = fields.find("timeout"))
      s.timeout = duration(*timeout, join(path, "timeout"), true);

    if (const Field* expect = fields.find("expect"))
      s.expect = expectSpec(*expect, join(path, "expect"));

    for (const auto& [name, value] : dynamic_default_headers_) {
      if (hasStepHeader(s.headers, name))
        continue;
      for (uint32_t slot : value.slotsUsed())
        if (slot_info_[slot].feeder >= 0)
          scope_->feeders.insert(uint32_t(slot_info_[slot].feeder));
      s.headers.emplace_back(name, value);
    }

    // Captured values exist once the response is in: for the steps after this one.
    if (const Field* capture = fields.find("capture"))
      s.captures = captures(*capture, join(path, "capture"));
    for (const Capture& c : s.captures)
      scope_->captured.insert(c.slot);

    auto [it, inserted] = stats_index_.emplace(stats_key, step_table_.size());
    if (inserted)
      step_table_.push_back(StepInfo{stats_key, s.method});
    s.stats_index = it->second;
    if (!scope_->first_request)
      scope_->first_request = s.stats_index;
  }

  // `query:` and `form:`: names to templated values, in the order written.
  std::vector<std::pair<std::string, Template>> templateMap(const Field& f, const std::string& path,
                                                            const std::string& what) {
    if (!f.value.IsMap())
      fail(f, path, "expected a mapping of " + what + ", got " + describe(f.value));
    std::vector<std::pair<std::string, Template>> out;
    std::unordered_set<std::string> names;
    for (const auto& kv : f.value) {
      if (!kv.first.IsScalar() || kv.first.Scalar().empty())
        fail(kv.first.Mark(), path, "expected a name, got " + describe(kv.first));
      const std::string name = kv.first.Scalar();
      const std::string item_path = join(path, name);
      if (!names.insert(name).second)
        fail(kv.first.Mark(), item_path, "duplicate key '" + name + "'");
      if (!kv.second.IsScalar())
        fail(Field{name, kv.first, kv.second}, item_path,
             "expected a string, got " + describe(kv.second));
      out.emplace_back(name, compileScalar(kv.second, item_path));
    }
    return out;
  }

  Template jsonBody(const Field& json, const std::string& path) {
    if (!json.value.IsMap() && !json.value.IsSequence())
      fail(json, path,
           "expected a mapping or a list, got " + describe(json.value) + " (use body: for text)");
    std::string text;
    try {
      writeJson(json.value, path, text);
    } catch (const nlohmann::json::exception& e) {
      fail(json, path, std::string("cannot be written as JSON: ") + e.what());
    }
    Template t;
    try {
      t = Template::compile(text, variables_, env_, &slots_);
    } catch (const TemplateError& e) {
      fail(json, path, e.what());
    }
    useSlots(t, path, [&](uint32_t) { return json.value.Mark(); });
    return t;
  }

  static bool hasStepHeader(const std::vector<std::pair<std::string, Template>>& headers,
                            std::string_view name) {
    return std::any_of(headers.begin(), headers.end(),
                       [&](const auto& h) { return iequals(h.first, name); });
  }

  // In the step or in http.headers: a Content-Type the user chose wins over json's default.
  bool hasHeader(const std::vector<std::pair<std::string, Template>>& headers,
                 std::string_view name) const {
    return hasStepHeader(headers, name) ||
           std::any_of(default_header_names_.begin(), default_header_names_.end(),
                       [&](const std::string& n) { return iequals(n, name); });
  }

  std::vector<Capture> captures(const Field& f, const std::string& path) const {
    constexpr const char* kForms = "{json: $.path}, {header: Name} or {regex: 'id=(\\d+)'}";
    if (!f.value.IsMap() || f.value.size() == 0)
      fail(f, path,
           std::string("expected a mapping of names to ") + kForms + ", got " + describe(f.value));
    std::vector<Capture> out;
    std::unordered_set<std::string> names;
    for (const auto& kv : f.value) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string capture_path = join(path, name);
      if (const std::string problem = captureNameProblem(name); !problem.empty())
        fail(kv.first.Mark(), capture_path, problem);
      if (!names.insert(name).second)
        fail(kv.first.Mark(), capture_path, "duplicate key '" + name + "'");
      const Field entry{name, kv.first, kv.second};
      if (!kv.second.IsMap() || kv.second.size() == 0)
        fail(entry, capture_path,
             std::string("expected ") + kForms + ", got " + describe(kv.second));
      const Fields how = checkKeys(kv.second, capture_path, {"json", "header", "regex"});
      if (how.all().size() > 1)
        fail(how.all()[1].key.Mark(), join(capture_path, how.all()[1].name),
             "a capture has exactly one of json, header or regex; this one already has '" +
                 how.all()[0].name + "'");
      const Field& spec = how.all()[0];
      const std::string spec_path = join(capture_path, spec.name);
      Capture c;
      c.name = name;
      const auto slot = slots_.find(name);
      if (slot == slots_.end()) // every capture name got a slot in scanCaptures()
        fail(kv.first.Mark(), capture_path, "internal error: no slot for this capture");
      c.slot = slot->second;
      const std::string text = nonEmptyString(spec, spec_path);
      if (spec.name == "json") {
        c.kind = Capture::Kind::Json;
        auto json_path = parseJsonPath(text);
        if (!json_path)
          fail(spec, spec_path,
               "expected a JSON path like $.token or $.items[0].id, got " + quoteValue(text));
        c.json = std::move(*json_path);
      } else if (spec.name == "header") {
        c.kind = Capture::Kind::Header;
        if (!isHeaderName(text))
          fail(spec, spec_path, "not a valid header name: " + quoteValue(text));
        c.header = text;
      } else {
        c.kind = Capture::Kind::Regex;
        c.pattern = text;
        try {
          c.regex = std::make_shared<const std::regex>(text, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          fail(spec, spec_path, std::string("not a valid regular expression: ") + e.what());
        }
        const size_t groups = c.regex->mark_count();
        if (groups != 1)
          fail(spec, spec_path,
               "a capture regex needs exactly one group '(...)' around the value, this one has " +
                   std::to_string(groups) + " (write other groups as (?:...))");
      }
      out.push_back(std::move(c));
    }
    return out;
  }

  Expect expectSpec(const Field& f, const std::string& path) const {
    const Fields fields =
        mapping(f, path, {"status", "body_contains", "json", "header", "max_latency"});
    Expect e;
    if (const Field* contains = fields.find("body_contains"))
      e.body_contains = nonEmptyString(*contains, join(path, "body_contains"));
    if (const Field* json = fields.find("json"))
      e.json = expectJson(*json, join(path, "json"));
    if (const Field* header = fields.find("header"))
      e.header = expectHeader(*header, join(path, "header"));
    if (const Field* latency = fields.find("max_latency"))
      e.max_latency = duration(*latency, join(path, "max_latency"), true);
    if (const Field* status = fields.find("status"))
      e.status = statusList(*status, join(path, "status"));
    return e;
  }

  std::vector<int> statusList(const Field& status, const std::string& path) const {
    const std::string expected = "an integer or a list of integers";
    auto code = [&](const YAML::Node& node) {
      const YAML::Mark mark = node.IsNull() ? status.key.Mark() : node.Mark();
      const int64_t value = integer(node, mark, path, expected);
      if (value < 100 || value > 599)
        fail(mark, path, "an HTTP status is 100 to 599, got " + std::to_string(value));
      return static_cast<int>(value);
    };
    std::vector<int> out;
    if (status.value.IsSequence()) {
      if (status.value.size() == 0)
        fail(status, path, "expected at least one status");
      for (const auto& item : status.value)
        out.push_back(code(item));
    } else {
      out.push_back(code(status.value));
    }
    return out;
  }

  std::vector<Expect::JsonValue> expectJson(const Field& f, const std::string& path) const {
    if (!f.value.IsMap() || f.value.size() == 0)
      fail(f, path,
           "expected a mapping of JSON paths to values like {$.status: ok}, got " +
               describe(f.value));
    std::vector<Expect::JsonValue> out;
    for (const auto& kv : f.value) {
      const std::string text = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string item_path = join(path, text);
      auto json_path = parseJsonPath(text);
      if (!json_path)
        fail(kv.first.Mark(), item_path,
             "expected a JSON path like $.status or $.items[0].sku, got " + describe(kv.first));
      if (kv.second.IsMap() || kv.second.IsSequence())
        fail(kv.second.Mark(), item_path,
             "expected a plain value (number, string, true, false or null), got " +
                 describe(kv.second));
      const std::string expected =
          kv.second.IsScalar() ? scalarToJson(kv.second).dump() : std::string("null");
      out.push_back(Expect::JsonValue{std::move(*json_path), expected});
    }
    return out;
  }

  std::vector<Expect::HeaderValue> expectHeader(const Field& f, const std::string& path) const {
    if (!f.value.IsMap() || f.value.size() == 0)
      fail(f, path,
           "expected a mapping of header names to the text each must contain, got " +
               describe(f.value));
    std::vector<Expect::HeaderValue> out;
    std::unordered_set<std::string> names; // lower case
    for (const auto& kv : f.value) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string item_path = join(path, name);
      if (!isHeaderName(name))
        fail(kv.first.Mark(), item_path, "not a valid header name");
      if (!names.insert(lower(name)).second)
        fail(kv.first.Mark(), item_path,
             "duplicate header '" + name + "' (header names ignore case)");
      // Nothing after the name: the header must be present, with any value.
      if (!kv.second.IsScalar() && !kv.second.IsNull())
        fail(kv.second.Mark(), item_path,
             "expected a string (the text the header's value must contain), got " +
                 describe(kv.second));
      out.push_back(
          Expect::HeaderValue{name, kv.second.IsScalar() ? kv.second.Scalar() : std::string()});
    }
    return out;
  }

  // YAML to compact JSON text, with YAML 1.2 core-schema typing of plain scalars; quoted
  // scalars stay strings. Keys are plain and unique, as everywhere else in a scenario. Written
  // as text, not built as a tree: linear in the body's size, however many keys a mapping has.
  void writeJson(const YAML::Node& node, const std::string& path, std::string& out) const {
    switch (node.Type()) {
    case YAML::NodeType::Map: {
      std::unordered_set<std::string> keys;
      out += '{';
      for (const auto& kv : node) {
        if (!kv.first.IsScalar())
          fail(kv.first.Mark(), path,
               "a JSON key is a name or a string, got " + describe(kv.first));
        const std::string& key = kv.first.Scalar();
        const std::string key_path = join(path, key);
        if (!keys.insert(key).second)
          fail(kv.first.Mark(), key_path, "duplicate key '" + key + "'");
        if (keys.size() > 1)
          out += ',';
        out += nlohmann::json(key).dump();
        out += ':';
        writeJson(kv.second, key_path, out);
      }
      out += '}';
      return;
    }
    case YAML::NodeType::Sequence: {
      out += '[';
      size_t i = 0;
      for (const auto& item : node) {
        if (i > 0)
          out += ',';
        writeJson(item, indexed(path, i++), out);
      }
      out += ']';
      return;
    }
    case YAML::NodeType::Scalar:
      out += scalarToJson(node).dump();
      return;
    default:
      out += "null";
      return;
    }
  }

  static nlohmann::ordered_json scalarToJson(const YAML::Node& node) {
    const std::string& text = node.Scalar();
    if (node.Tag() != "?")
      return text; // quoted, or explicitly tagged: the user said "string"
    if (text == "true" || text == "True" || text == "TRUE")
      return true;
    if (text == "false" || text == "False" || text == "FALSE")
      return false;
    if (text == "null" || text == "Null" || text == "NULL" || text == "~")
      return nullptr;
    const char* begin = text.data() + (!text.empty() && text[0] == '+' ? 1 : 0);
    const char* end = text.data() + text.size();
    const bool digits_only = begin != end &&
                             std::all_of(begin + (*begin == '-' ? 1 : 0), end,
                                         [](char c) { return c >= '0' && c <= '9'; }) &&
                             begin + (*begin == '-' ? 1 : 0) != end;
    if (digits_only) {
      int64_t i = 0;
      if (auto [p, ec] = std::from_chars(begin, end, i); ec == std::errc() && p == end)
        return i;
      uint64_t u = 0;
      if (auto [p, ec] = std::from_chars(begin, end, u); ec == std::errc() && p == end)
        return u;
    }
    double d = 0;
    const bool looks_numeric = begin != end && (std::isdigit(static_cast<unsigned char>(*begin)) ||
                                                *begin == '-' || *begin == '.');
    if (looks_numeric) {
      if (auto [p, ec] = std::from_chars(begin, end, d, std::chars_format::general);
          ec == std::errc() && p == end && std::isfinite(d))
        return d;
    }
    return text;
  }

  const std::string& file_;
  const std::string& text_;
  const LoadOptions& options_;
  std::vector<Override> overrides_;
  std::map<std::string, std::string> environment_; // with --env-file: what env() reads
  EnvSource env_;
  std::map<std::string, std::string> env_used_;
  std::map<std::string, std::string> variables_;
  std::vector<Feeder> feeders_;
  SlotNames slots_;
  std::vector<SlotInfo> slot_info_;                     // by slot
  std::vector<std::vector<CaptureSite>> flow_captures_; // by flow, in reading order
  FlowScope* scope_ = nullptr;                          // while a flow's steps load
  std::vector<std::pair<std::string, Template>> dynamic_default_headers_;
  std::vector<std::string> default_header_names_;
  std::map<std::string, size_t> stats_index_;
  std::vector<StepInfo> step_table_;
  std::map<std::string, std::string> files_;
};

} // namespace

Scenario loadScenarioText(const std::string& yaml_text, const std::string& file_name,
                          const LoadOptions& options) {
  YAML::Node root = parseDocument(yaml_text, file_name);
  if (root.IsNull())
    throw ConfigError(file_name, 0, 0, "", "empty scenario");
  try {
    return Loader(file_name, yaml_text, options).load(root);
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
