// The scenario model (SCENARIO.md): what the loader produces from YAML after full validation,
// and what the engine runs. Immutable once loaded; shared read-only by every load thread.
#pragma once

#include "common/csv.h"
#include "common/endpoint.h"
#include "common/messaging_spec.h"
#include "common/template.h"
#include "common/threshold.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <regex>
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

// A JSONPath subset: `$`, `.key`, `['key']`, `[index]`, e.g. `$.items[0].sku`.
struct JsonPath {
  struct Segment {
    std::string key; // when index < 0
    int64_t index = -1;
  };
  std::string text; // as written
  std::vector<Segment> segments;
};
// Parses the subset above; std::nullopt when `text` is not one.
std::optional<JsonPath> parseJsonPath(std::string_view text);

struct Expect {
  struct JsonValue {
    JsonPath path;
    std::string expected_json; // the YAML value as compact JSON: 42, "ok", true, null
  };
  struct HeaderValue {
    std::string name;     // matched case-insensitively
    std::string contains; // the header must be present and its value contain this
  };
  std::vector<int> status;                  // allowed statuses; empty means "anything below 400"
  std::optional<std::string> body_contains; // error kind "expect_body"
  std::vector<JsonValue> json;              // error kind "expect_json"
  std::vector<HeaderValue> header;          // error kind "expect_header"
  std::optional<microseconds> max_latency;  // error kind "expect_latency"
  bool allows(int code) const;
};

// `capture: {name: {json: $.token}}`; a capture that finds nothing is error "capture_missing".
struct Capture {
  enum class Kind { Json, Header, Regex };
  std::string name;
  uint32_t slot = 0; // into the virtual user's slots (see SlotNames)
  Kind kind = Kind::Json;
  JsonPath json;                           // Kind::Json
  std::string header;                      // Kind::Header, matched case-insensitively
  std::string pattern;                     // Kind::Regex: ECMAScript syntax, exactly one group
  std::shared_ptr<const std::regex> regex; // Kind::Regex, compiled at load
};

struct Step {
  enum class Kind { Request, Think, Loop, Publish, Subscribe };
  Kind kind = Kind::Request;
  Location where;

  // Kind::Request
  std::string method; // GET POST PUT PATCH DELETE HEAD OPTIONS
  Template url;       // a path joined to target's base, or an absolute URL when url_absolute
  bool url_absolute = false;
  std::vector<std::pair<std::string, Template>> query;   // appended as ?k=v&..., values encoded
  std::vector<std::pair<std::string, Template>> headers; // step headers over http.headers
  // From `body:`, `json:` (Content-Type application/json added unless a header sets it) or
  // `form:` (application/x-www-form-urlencoded, each value encoded at render).
  std::optional<Template> body;
  std::vector<std::pair<std::string, Template>> form; // non-empty for `form:`; body unset then
  std::optional<microseconds> timeout;                // over http.timeout
  Expect expect;
  std::vector<Capture> captures;
  size_t stats_index = 0; // into Scenario::step_table

  // Kind::Think
  ThinkTime think;

  // Kind::Loop
  int loop_count = 0;
  std::vector<Step> steps;

  // Kind::Publish and Kind::Subscribe (common/messaging_spec.h)
  std::shared_ptr<const PublishSpec> publish;
  std::shared_ptr<const SubscribeSpec> subscribe;
};

// One segment of load.stages: ramp linearly from the previous level to `to` over `over`, or
// hold the previous level for `over`. Levels are users (closed) or arrivals per second (open).
struct Stage {
  bool hold = false;
  double to = 0;
  microseconds over{0};
};

struct LoadSpec {
  enum class Model { Closed, Open };
  Model model = Model::Closed;
  // Closed: `users`. Open: `rate` (arrivals per second, cluster-wide).
  int users = 0;
  double rate = 0;
  microseconds ramp{0};     // reach users/rate linearly from 0 over this
  microseconds duration{0}; // then hold for this
  // With stages, users/rate/ramp/duration are not written: the loader fills `stages` from
  // them instead (ramp, then hold), so that the engine reads only `stages`. Levels start at 0.
  std::vector<Stage> stages;
  bool stages_written = false; // the scenario wrote `stages:` itself
  uint64_t iterations = 0;     // 0: no limit; else flow iterations in total, cluster-wide
  uint64_t max_in_flight = 0;  // open model: cap on iterations in progress, cluster-wide
  microseconds total() const;  // sum of the stages
  double peak() const;         // the highest level any stage reaches
};

// Default for load.max_in_flight in the open model (documented in docs/scenario.md).
constexpr uint64_t kDefaultMaxInFlight = 10000;
// The most virtual users (closed model) or iterations in flight (open model) of a run, and of
// one worker. A virtual user costs about 3 KiB idle and more with its buffers, plus a socket:
// 100000 on a worker is a few hundred MiB and as many file descriptors.
constexpr int kMaxUsers = 1000000;
constexpr int kMaxUsersPerWorker = 100000;

struct Flow {
  std::string name;
  double weight = 1.0;
  ThinkTime think; // after each request step
  std::vector<Step> steps;
  std::vector<uint32_t> feeders; // indexes into Scenario::data of the feeders its templates use
  size_t first_request_stats_index = 0; // where an open-model arrival dropped from it counts
  // Closed model, `users:` on every flow: this flow's users (a pinned role, such as a
  // subscriber), cluster numbers [first_user, first_user + users). 0: picked by weight.
  uint64_t users = 0;
  uint64_t first_user = 0;
  // `load:` of its own (flows[i].load): the flow runs on it alone, in a load group of its own
  // (LoadGroup), and its users keep it for life. Unset: it shares the scenario-wide load.
  std::optional<LoadSpec> load;
};

// A load schedule and the flows it drives, picked by weight among them on every iteration.
// Scenario::groups[0] is the scenario-wide `load:` over the flows without a load of their own
// (when there are any), then one group per flow with its own load:, in flow order.
struct LoadGroup {
  LoadSpec load;
  std::vector<size_t> flows; // into Scenario::flows
  std::string path;          // "load" or "flows[2].load": for messages
  // {{vu}} numbers of the group's users start here, cluster-wide: each group has a block of
  // its peak users (closed model) or of its max_in_flight (open model) after the previous one.
  uint64_t first_vu = 0;
  bool open() const { return load.model == LoadSpec::Model::Open; }
  // How many {{vu}} numbers the group takes: peak users, or max_in_flight.
  uint64_t vuCount() const;
};

struct HaltSpec {
  enum class OnError { First, Never, Count, Rate };
  // Rejoin: as Continue, and the master probes the lost worker and gives it its share back when
  // it answers again (master/rejoin.h).
  enum class OnWorkerLost { Halt, Continue, Rejoin };
  OnError on_error = OnError::First;
  uint64_t error_count = 0;     // Count: halt at this many errors cluster-wide
  double error_rate = 0;        // Rate: halt when errors/requests over the window reach this
  microseconds error_window{0}; // Rate: 0 means the whole run so far
  OnWorkerLost on_worker_lost = OnWorkerLost::Halt;
  std::vector<Threshold> thresholds;
};

// `capacity:` (or master --find-capacity): a search for the highest open-model rate the target
// holds within its SLO, in probes of one rate each (docs/scenario.md, "capacity"). Rates are
// arrivals per second, cluster-wide.
struct CapacitySpec {
  double start = 10;              // the first probe's rate
  double max = 100000;            // never probe above this
  microseconds probe{10'000'000}; // how long each probe holds its rate
  microseconds warmup{2'000'000}; // the start of each probe, not judged
  double resolution = 0.05;       // stop when (first fail - last pass) <= this x first fail
  int confirm = 1;                // re-run the best passing rate this many times
  microseconds slo_p99{200'000};  // latency_ms p99 (from the schedule) at most this
  double slo_error_rate = 0.001;  // errors / requests at most this
  uint64_t max_in_flight = 10000; // cluster-wide, as load.max_in_flight
  microseconds max_lag{10'000};   // schedule lag p99 above this: the generators lag
};
// The shortest judged part of a probe (probe - warmup). A probe's figures are the workers'
// Stats deltas, cut once a second (common::kStatsInterval): its judged part begins on a cut and
// its figures are those of the cuts up to its end. Under half a cut, most of what the judged
// cuts hold would be the edges (the warmup's requests still in flight when judging begins),
// and a shorter probe would not end the search sooner: each probe waits for a cut either way.
constexpr microseconds kMinCapacityJudged{500'000};

constexpr uint64_t kDefaultMaxBody = 64 * 1024 * 1024; // http.max_body

// http.h2: the nghttp2 engine's settings (HTTP/2 only).
struct H2Spec {
  uint32_t streams_per_connection = 1; // virtual users sharing one connection, as streams
  uint32_t window = 1 << 20; // bytes: each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE)
};
constexpr uint32_t kMaxStreamsPerConnection = 1000;

struct HttpSpec {
  enum class Engine { Beast, Curl, Nghttp2 };
  enum class Version { Http1, Http2 };
  Engine engine = Engine::Beast; // version "2" selects nghttp2 unless engine is written
  Version version = Version::Http1;
  microseconds timeout{std::chrono::seconds(5)};
  bool keep_alive = true;
  bool follow_redirects = false; // at most kMaxRedirects hops; 301/302/303 become GET
  // Bytes: the most of a response body kept in memory, for the steps that read it (as
  // received and as decoded); a longer one is error kind body_too_large. Others are only
  // counted, whatever their length.
  uint64_t max_body = kDefaultMaxBody;
  TlsSpec tls;
  std::vector<std::pair<std::string, std::string>> headers; // sent with every request
  H2Spec h2;
};
constexpr int kMaxRedirects = 10;

// `data:` feeders. Rows are read on the master and shipped; with split: per_worker each worker
// gets only its slice, and loads it as if it were the whole file.
struct Feeder {
  enum class Order { Sequence, Random, Shuffle };
  enum class Split { PerWorker, Shared };
  enum class OnExhausted { Wrap, Stop, Halt };
  std::string name;
  std::string file; // as written (relative to the scenario file), the key in shipped files
  Order order = Order::Sequence;
  Split split = Split::PerWorker;
  OnExhausted on_exhausted = OnExhausted::Wrap;
  std::vector<std::string> columns;
  std::vector<uint32_t> slots; // column i renders from slot slots[i]
  std::vector<std::vector<std::string>> rows;
  Location where;
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
  // The scenario-wide `load:` (a capacity run: open model at capacity.start, held long); left
  // at its defaults when every flow has a load: of its own. The engine runs `groups`.
  LoadSpec load;
  std::optional<CapacitySpec> capacity; // set: a capacity run (load: not written)
  HaltSpec halt;
  HttpSpec http;
  std::optional<MessagingSpec> messaging; // `messaging:`, for publish and subscribe steps
  // What the loader found suspicious but valid (a client id every user shares): printed by
  // --dry-run and written to the report's warnings.
  std::vector<std::string> warnings;
  std::map<std::string, std::string> variables;
  std::map<std::string, std::string> env; // every env() value read, shipped to workers
  std::vector<Feeder> data;
  SlotNames slots; // every capture name and `feeder.column`
  std::vector<Flow> flows;
  std::vector<LoadGroup> groups; // never empty: the load that drives each flow
  std::vector<StepInfo> step_table;
  std::vector<std::string> overrides; // --set key.path=value, as applied
  // Files the scenario names (data CSVs, TLS PEMs), by the name written, with their contents:
  // what the master ships to workers.
  std::map<std::string, std::string> files;

  // The run's length: its longest group's stages.
  microseconds length() const;
  // Whether any group runs the open model.
  bool anyOpen() const;
};

struct LoadOptions {
  std::vector<std::string> overrides; // --set key.path=value, applied before validation
  // --env-file values; env() looks here before the process environment. Master only.
  const std::map<std::string, std::string>* env_overlay = nullptr;
  // On a worker: the env() values and files the master shipped. A worker never reads its own
  // environment or disk for a scenario.
  const std::map<std::string, std::string>* shipped_env = nullptr;
  const std::map<std::string, std::string>* shipped_files = nullptr;
  // master --find-capacity (Prepare.find_capacity): a capacity run with the default search
  // when the scenario has no capacity: section; its load:, if written, is checked and unused.
  bool find_capacity = false;
};

// Limits of the YAML text (docs/scenario.md, "Limits"), checked before any node is built.
// Lists and mappings nest at most this deep:
constexpr int kMaxNesting = 100;
// Aliases (*name) repeat at most this much in all, counted as if written out: every walk of
// the tree (a json: body, the steps) expands them.
constexpr uint64_t kMaxAliasNodes = 100000;
constexpr uint64_t kMaxAliasBytes = uint64_t(16) << 20;

// Both throw ConfigError ("file:line:col: key.path: message") on any problem; nothing is
// partly loaded.
// Files named by the scenario are read relative to its directory (master), or taken from
// options.shipped_files (worker).
Scenario loadScenarioFile(const std::string& path, const LoadOptions& options = {});
Scenario loadScenarioText(const std::string& yaml_text, const std::string& file_name,
                          const LoadOptions& options = {});

} // namespace stampede::common
