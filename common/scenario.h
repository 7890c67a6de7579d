// The scenario model (SCENARIO.md): what the loader produces from YAML after full validation,
// and what the engine runs. Immutable once loaded; shared read-only by every load thread.
#pragma once

#include "common/template.h"
#include "common/threshold.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stampede::common {

using std::chrono::microseconds;

struct Location {
  int line = 0; // 1-based; 0 when unknown
  int column = 0;
};

struct ThinkTime {
  enum class Kind { None, Fixed, Uniform, Exponential };
  Kind kind = Kind::None;
  microseconds a{0}; // Fixed: the pause; Uniform: low bound; Exponential: mean
  microseconds b{0}; // Uniform: high bound
};

// Where requests go: parsed from `target` or from an absolute step URL.
struct Endpoint {
  std::string scheme; // "http" or "https"
  std::string host;
  uint16_t port = 0;
  std::string base_path; // "" or "/api" (no trailing slash)
  bool tls() const { return scheme == "https"; }
};

// Parses "http://host[:port][/base]"; std::nullopt when it is not such a URL.
std::optional<Endpoint> parseEndpoint(std::string_view url);

struct Expect {
  std::vector<int> status;                  // allowed statuses; empty means "anything below 400"
  std::optional<std::string> body_contains; // error kind "expect_body" when absent
  bool allows(int code) const;
};

struct Step {
  enum class Kind { Request, Think, Loop };
  Kind kind = Kind::Request;
  Location where;

  // Kind::Request
  std::string method; // "GET", "POST", "PUT", "DELETE"
  Template url;       // a path joined to target's base, or an absolute URL when url_absolute
  bool url_absolute = false;
  std::vector<std::pair<std::string, Template>> headers; // step headers over http.headers
  std::optional<Template> body;                          // from `body:` or `json:`
  Expect expect;
  size_t stats_index = 0; // into Scenario::step_table

  // Kind::Think
  ThinkTime think;

  // Kind::Loop
  int loop_count = 0;
  std::vector<Step> steps;
};

struct Flow {
  std::string name;
  double weight = 1.0;
  ThinkTime think; // after each request step
  std::vector<Step> steps;
};

struct LoadSpec {
  int users = 0;
  microseconds ramp{0};
  microseconds duration{0};
};

struct HaltSpec {
  enum class OnError { First, Never, Count, Rate };
  enum class OnWorkerLost { Halt, Continue };
  OnError on_error = OnError::First;
  uint64_t error_count = 0;     // Count: halt at this many errors cluster-wide
  double error_rate = 0;        // Rate: halt when errors/requests over the window reach this
  microseconds error_window{0}; // Rate: 0 means the whole run so far
  OnWorkerLost on_worker_lost = OnWorkerLost::Halt;
  std::vector<Threshold> thresholds;
};

struct HttpSpec {
  enum class Engine { Beast, Curl };
  Engine engine = Engine::Beast;
  microseconds timeout{std::chrono::seconds(5)};
  bool keep_alive = true;
  std::vector<std::pair<std::string, std::string>> headers; // sent with every request
};

// One row per distinct stats key (a step's `name`, default "METHOD path-template").
struct StepInfo {
  std::string name;
  std::string method;
};

struct Scenario {
  std::string file;        // as given on the command line
  std::string source_text; // the YAML as read
  std::string name;
  Endpoint target;
  LoadSpec load;
  HaltSpec halt;
  HttpSpec http;
  std::map<std::string, std::string> variables;
  std::map<std::string, std::string> env; // every env() value read, shipped to workers
  std::vector<Flow> flows;
  std::vector<StepInfo> step_table;
};

// Both throw ConfigError ("file:line:col: key.path: message") on any problem; nothing is
// partly loaded.
Scenario loadScenarioFile(const std::string& path);
// `shipped_env`: on a worker, the env() values the master read (the worker's own environment
// is never consulted); null on the master.
Scenario loadScenarioText(const std::string& yaml_text, const std::string& file_name,
                          const std::map<std::string, std::string>* shipped_env = nullptr);

} // namespace stampede::common
