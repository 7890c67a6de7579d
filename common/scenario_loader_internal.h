// The scenario loader's shared parts: its helpers, and the Loader class whose members
// scenario_load.cpp, scenario_slots.cpp, scenario_sections.cpp and scenario_flows.cpp define.
// Internal to those files.
#pragma once

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

namespace stampede::common::scenario_loader {

// ---------------------------------------------------------------------------------------------
// Helpers of the loader: words and the environment

constexpr int kMaxLoopDepth = 16; // deeper is a mistake, and bounds the engine's recursion

constexpr std::string_view kMethods[] = {"get",    "post", "put",    "patch",
                                         "delete", "head", "options"};

constexpr std::string_view kStepKeys[] = {
    "get",   "post", "put",     "patch",  "delete",  "head",    "options",
    "think", "loop", "steps",   "name",   "headers", "query",   "body",
    "json",  "form", "timeout", "expect", "capture", "publish", "subscribe"};

constexpr std::string_view kActionList =
    "get, post, put, patch, delete, head, options, think, loop, publish or subscribe";

inline bool isIdentifier(std::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return isAlnum(c) || c == '_'; });
}

inline bool isMethod(std::string_view name) {
  return std::find(std::begin(kMethods), std::end(kMethods), name) != std::end(kMethods);
}

// RFC 9110 token characters.
inline bool isHeaderName(std::string_view name) {
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return isAlnum(c) || kExtra.find(c) != std::string_view::npos;
  });
}

// The process environment with --env-file values over it: what env() reads on the master.
inline std::map<std::string, std::string>
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

// ---------------------------------------------------------------------------------------------
// The loader

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

  Scenario load(YAML::Node root);

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
                         const std::string& message) const;
  // At the value, except when there is none: then at its key, which is where the eye goes.
  [[noreturn]] void fail(const Field& f, const std::string& path, const std::string& message) const;

  // ------------------------------------------------------------------------------------------
  // Shapes and scalars

  // Checks the keys of a mapping and returns its fields. Refuses duplicates and unknown keys
  // (with a suggestion).
  Fields checkKeys(const YAML::Node& map, const std::string& path,
                   std::span<const std::string_view> known) const;
  Fields checkKeys(const YAML::Node& map, const std::string& path,
                   std::initializer_list<std::string_view> known) const;

  void requireKeys(const YAML::Node& map, const std::string& path, const Fields& fields,
                   std::initializer_list<std::string_view> required) const;

  Fields mapping(const Field& f, const std::string& path,
                 std::initializer_list<std::string_view> known) const;

  std::string string(const Field& f, const std::string& path) const;

  std::string nonEmptyString(const Field& f, const std::string& path) const;

  static YAML::Mark markOf(const Field& f);

  int64_t integer(const YAML::Node& node, const YAML::Mark& mark, const std::string& path,
                  const std::string& expected) const;

  int positiveInt(const Field& f, const std::string& path) const;

  // A number of virtual users, or of iterations in flight (each holds one): at most kMaxUsers.
  void checkUsers(int64_t value, const YAML::Mark& mark, const std::string& path,
                  const std::string& what) const;

  uint64_t positiveCount(const Field& f, const std::string& path) const;

  double positiveNumber(const Field& f, const std::string& path) const;

  bool boolean(const Field& f, const std::string& path) const;

  // A duration >= 0, or > 0 when `positive`.
  microseconds duration(const Field& f, const std::string& path, bool positive) const;

  // Arrivals per second from "500/s", "30/m" or "2/h"; > 0 unless `zero_ok`.
  double rate(const Field& f, const std::string& path, bool zero_ok) const;

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

  ThinkTime think(const Field& f, const std::string& path) const;

  // Where an error at byte `offset` of a scalar's value is in the file: exact when the value
  // is written on one line without escapes before that byte, else the scalar's start.
  YAML::Mark markAt(const YAML::Node& scalar, size_t offset) const;

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

  Template compileScalar(const YAML::Node& scalar, const std::string& path);

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

  std::string usedBeforeCapture(const std::string& name) const;

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

  uint32_t addSlot(const std::string& name, int feeder);

  // Why `name` cannot be a capture's, or "" when it can.
  std::string captureNameProblem(const std::string& name) const;

  // The mapping value of `key` in `map`, or an undefined node; never creates anything.
  static YAML::Node child(const YAML::Node& map, std::string_view key);

  // Gives every well-formed capture name a slot and notes where each flow captures what.
  // Malformed input is left for the flows pass to report in reading order.
  void scanCaptures(const YAML::Node& flows);

  void scanSteps(const YAML::Node& steps, size_t flow);

  // A sample rendering, for checks on what a template will look like (URL shape). Slots
  // render empty.
  static std::string sample(const Template& t);

  // ------------------------------------------------------------------------------------------
  // Files named by the scenario

  // The text of a file the scenario names: from the master's disk, relative to the scenario's
  // directory, or from what the master shipped (worker). Recorded in files_ for shipping.
  std::string namedFile(const Field& f, const std::string& path, const std::string& name);

  // ------------------------------------------------------------------------------------------
  // Top-level sections

  Endpoint target(const Field& f) const;

  // `load:` at `at` ("load", or "flows[2].load" for a flow's own).
  LoadSpec loadSpec(const Field& f, const std::string& at = "load") const;

  std::vector<Stage> stageList(const Field& f, LoadSpec::Model& model, const std::string& at) const;

  // The stages' durations add up without overflowing (LoadSpec::total() sums them).
  void checkTotal(const std::vector<Stage>& stages, const Field& f, const std::string& path) const;

  HaltSpec halt(const Field& f) const;

  // `capacity:` (scenario_capacity.cpp), and the open-model load its probes run on.
  CapacitySpec capacitySpec(const Field& f) const;
  static LoadSpec capacityLoad(const CapacitySpec& spec, microseconds http_timeout);
  // "5%" as 0.05; 100% and more refused, 0% only with zero_ok.
  double percentage(const Field& f, const std::string& path, bool zero_ok) const;

  void onError(const Field& f, HaltSpec& spec) const;

  std::vector<Threshold> thresholds(const Field& f) const;

  std::map<std::string, std::string> variables(const Field& f) const;

  // `data:` feeders: each CSV read (or taken from what was shipped) and checked whole, and a
  // slot for each `feeder.column`.
  void data(const Field& f);

  // Parses a `headers:` mapping into compiled templates, refusing names that are not tokens,
  // duplicates (case-insensitive, as HTTP compares them) and values with line breaks.
  std::vector<std::pair<std::string, Template>> headerMap(const Field& f, const std::string& path);

  HttpSpec http(const Field& f);

  // `path`: "http.tls" or "messaging.tls", for messages.
  TlsSpec tlsSpec(const Field& f, const std::string& path);
  // `messaging:` and its steps (scenario_messaging.cpp).
  MessagingSpec messaging(const Field& f);
  HeartbeatSpec heartbeat(const Field& f);
  void publishStep(Step& s, const Field& action, const Fields& fields, const std::string& path);
  void subscribeStep(Step& s, const Field& action, const Fields& fields, const std::string& path);
  Destination destination(const Field& f, const std::string& path) const;
  // A step's row in the stats table, and the flow's first such row.
  void addStatsRow(Step& s, const std::string& key, const std::string& method);
  // `users:` on flows: all or none, closed model, adding up to load.users.
  void pinFlows(std::vector<Flow>& flows, const LoadSpec& load, const Field& flows_field) const;
  static std::vector<std::string> messagingWarnings(const MessagingSpec& spec,
                                                    const std::vector<LoadGroup>& groups);
  // Per-flow load (scenario_load.cpp): whether every item of `flows:` writes a load: of its own,
  // and the scenario's load groups (Scenario::groups), with their {{vu}} blocks.
  static bool everyFlowHasLoad(const YAML::Node& flows);
  std::vector<LoadGroup> loadGroups(const Scenario& s, const Field& flows_field) const;

  // ------------------------------------------------------------------------------------------
  // Flows and steps

  std::vector<Flow> flows(const Field& f);

  std::vector<Step> stepList(const Field& f, const std::string& path, int depth);

  Step step(const YAML::Node& node, const std::string& path, int depth);

  void refuseOthers(const Fields& fields, const std::string& path,
                    std::initializer_list<std::string_view> allowed, const std::string& what) const;

  void request(Step& s, const Field& action, const Fields& fields, const std::string& path);

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

  Template jsonBody(const Field& json, const std::string& path);

  static bool hasStepHeader(const std::vector<std::pair<std::string, Template>>& headers,
                            std::string_view name);

  // In the step or in http.headers: a Content-Type the user chose wins over json's default.
  bool hasHeader(const std::vector<std::pair<std::string, Template>>& headers,
                 std::string_view name) const;

  std::vector<Capture> captures(const Field& f, const std::string& path) const;

  Expect expectSpec(const Field& f, const std::string& path) const;

  std::vector<int> statusList(const Field& status, const std::string& path) const;

  std::vector<Expect::JsonValue> expectJson(const Field& f, const std::string& path) const;

  std::vector<Expect::HeaderValue> expectHeader(const Field& f, const std::string& path) const;

  // YAML to compact JSON text, with YAML 1.2 core-schema typing of plain scalars; quoted
  // scalars stay strings. Keys are plain and unique, as everywhere else in a scenario. Written
  // as text, not built as a tree: linear in the body's size, however many keys a mapping has.
  void writeJson(const YAML::Node& node, const std::string& path, std::string& out) const;

  static nlohmann::ordered_json scalarToJson(const YAML::Node& node);

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
  std::optional<MessagingSpec> messaging_; // loaded before the flows
};

} // namespace stampede::common::scenario_loader
