#include "common/scenario_loader_internal.h"

namespace stampede::common::scenario_loader {

Endpoint Loader::target(const Field& f) const {
  const std::string text = string(f, "target");
  if (text.find("{{") != std::string::npos)
    fail(f, "target", "must be a literal URL; templates are not allowed here");
  auto endpoint = parseEndpoint(text);
  if (!endpoint)
    fail(f, "target",
         "expected an http:// or https:// URL like http://127.0.0.1:8080, got " + quoteValue(text));
  return *endpoint;
}

LoadSpec Loader::loadSpec(const Field& f, const std::string& at) const {
  const Fields fields = mapping(
      f, at, {"users", "rate", "ramp", "duration", "stages", "iterations", "max_in_flight"});
  LoadSpec spec;
  if (const Field* stages = fields.find("stages")) {
    for (const Field& other : fields.all())
      if (other.name == "users" || other.name == "rate" || other.name == "ramp" ||
          other.name == "duration")
        fail(other.key.Mark(), join(at, other.name),
             "'" + other.name +
                 "' cannot be used with stages: the stages set every level and how long it "
                 "lasts ({to: N, over: D} for users, {to: N/s, over: D} for a rate, {hold: D})");
    spec.stages = stageList(*stages, spec.model, at);
    spec.stages_written = true;
    if (spec.total().count() <= 0)
      fail(*stages, join(at, "stages"), "the stages last 0s in total");
    if (spec.peak() <= 0)
      fail(*stages, join(at, "stages"),
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
      fail(second.key.Mark(), join(at, second.name),
           "use either users (closed model) or rate (open model), not both");
    }
    if (!users && !open)
      fail(f.value.Mark(), join(at, "users"),
           "required key 'users' is missing (or rate: for the open model, or stages:)");
    double level = 0;
    if (users) {
      spec.model = LoadSpec::Model::Closed;
      const int64_t count = integer(users->value, markOf(*users), join(at, "users"), "an integer");
      if (count <= 0)
        fail(markOf(*users), join(at, "users"),
             "must be a positive integer, got " + std::to_string(count));
      checkUsers(count, markOf(*users), join(at, "users"), "virtual users");
      spec.users = static_cast<int>(count);
      level = spec.users;
    } else {
      spec.model = LoadSpec::Model::Open;
      spec.rate = rate(*open, join(at, "rate"), false);
      level = spec.rate;
    }
    if (const Field* ramp = fields.find("ramp"))
      spec.ramp = duration(*ramp, join(at, "ramp"), false);
    const Field* hold = fields.find("duration");
    if (hold == nullptr)
      fail(f.value.Mark(), join(at, "duration"),
           "required key 'duration' is missing (or write stages: instead)");
    spec.duration = duration(*hold, join(at, "duration"), true);
    if (spec.ramp > microseconds::max() - spec.duration)
      fail(*hold, join(at, "duration"), "ramp and duration together are too long");
    // The engine reads only stages: the ramp (kept when 0s, a step to the level), then hold.
    spec.stages = {Stage{false, level, spec.ramp}, Stage{true, 0, spec.duration}};
    spec.stages_written = false;
  }
  if (const Field* iterations = fields.find("iterations"))
    spec.iterations = positiveCount(*iterations, join(at, "iterations"));
  if (const Field* cap = fields.find("max_in_flight")) {
    if (spec.model == LoadSpec::Model::Closed)
      fail(cap->key.Mark(), join(at, "max_in_flight"),
           "max_in_flight belongs to the open model (rate: or stages in N/s); in the closed "
           "model the users are the cap");
    spec.max_in_flight = positiveCount(*cap, join(at, "max_in_flight"));
    checkUsers(int64_t(spec.max_in_flight), markOf(*cap), join(at, "max_in_flight"),
               "iterations in flight");
  } else if (spec.model == LoadSpec::Model::Open) {
    spec.max_in_flight = kDefaultMaxInFlight;
  }
  return spec;
}

std::vector<Stage> Loader::stageList(const Field& f, LoadSpec::Model& model,
                                     const std::string& at) const {
  if (!f.value.IsSequence() || f.value.size() == 0)
    fail(f, join(at, "stages"),
         "expected a non-empty list of stages like {to: 100/s, over: 1m} or {hold: 5m}, got " +
             describe(f.value));
  std::vector<Stage> out;
  std::string model_path; // the stage that set the model
  for (size_t i = 0; i < f.value.size(); ++i) {
    const YAML::Node node = f.value[i];
    const std::string path = indexed(join(at, "stages"), i);
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
    fail(f, join(at, "stages"), "no stage sets a level: start with {to: N, over: D}");
  return out;
}

void Loader::checkTotal(const std::vector<Stage>& stages, const Field& f,
                        const std::string& path) const {
  microseconds total{0};
  for (const Stage& s : stages) {
    if (s.over > microseconds::max() - total)
      fail(f, path, "the stages together are too long");
    total += s.over;
  }
}

HaltSpec Loader::halt(const Field& f) const {
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
    else if (value == "rejoin")
      spec.on_worker_lost = HaltSpec::OnWorkerLost::Rejoin;
    else
      fail(*lost, "halt.on_worker_lost",
           "expected halt, continue or rejoin, got " + quoteValue(value) +
               didYouMean(value, {"halt", "continue", "rejoin"}));
  }
  if (const Field* list = fields.find("thresholds"))
    spec.thresholds = thresholds(*list);
  return spec;
}

void Loader::onError(const Field& f, HaltSpec& spec) const {
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

std::vector<Threshold> Loader::thresholds(const Field& f) const {
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

std::map<std::string, std::string> Loader::variables(const Field& f) const {
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

void Loader::data(const Field& f) {
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

std::vector<std::pair<std::string, Template>> Loader::headerMap(const Field& f,
                                                                const std::string& path) {
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

HttpSpec Loader::http(const Field& f) {
  const Fields fields = mapping(f, "http",
                                {"timeout", "version", "engine", "keep_alive", "follow_redirects",
                                 "max_body", "headers", "tls", "h2"});
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
    spec.engine = choice<HttpSpec::Engine>(*engine, "http.engine",
                                           {{"beast", HttpSpec::Engine::Beast},
                                            {"curl", HttpSpec::Engine::Curl},
                                            {"nghttp2", HttpSpec::Engine::Nghttp2}});
  }
  if (spec.version == HttpSpec::Version::Http2) {
    if (engine && spec.engine == HttpSpec::Engine::Beast)
      fail(*engine, "http.engine",
           "beast speaks HTTP/1.1 only; use engine: nghttp2 (the default) or curl for version 2");
    if (!engine)
      spec.engine = HttpSpec::Engine::Nghttp2;
  } else if (engine && spec.engine == HttpSpec::Engine::Nghttp2) {
    fail(*engine, "http.engine", "nghttp2 speaks HTTP/2 only; add version: \"2\"");
  }
  if (const Field* h2 = fields.find("h2")) {
    const Fields h2_fields = mapping(*h2, "http.h2", {"streams_per_connection", "window"});
    if (spec.engine != HttpSpec::Engine::Nghttp2)
      fail(h2->key.Mark(), "http.h2",
           "needs the nghttp2 engine (version: \"2\" without engine: curl)");
    if (const Field* streams = h2_fields.find("streams_per_connection")) {
      const uint64_t n = positiveCount(*streams, "http.h2.streams_per_connection");
      if (n < 1 || n > kMaxStreamsPerConnection)
        fail(*streams, "http.h2.streams_per_connection",
             "expected 1 to " + std::to_string(kMaxStreamsPerConnection) + ", got " +
                 std::to_string(n));
      spec.h2.streams_per_connection = uint32_t(n);
    }
    if (const Field* window = h2_fields.find("window")) {
      const auto bytes =
          window->value.IsScalar() ? parseByteSize(window->value.Scalar()) : std::nullopt;
      // RFC 9113, 6.9.2: a window is at most 2^31 - 1 bytes.
      if (!bytes || *bytes < 1024 || *bytes > 0x7fffffff)
        fail(markOf(*window), "http.h2.window",
             "expected a size from 1KiB to 2GiB - 1 byte (such as 1MiB), got " +
                 describe(window->value));
      spec.h2.window = uint32_t(*bytes);
    }
  }
  if (const Field* keep_alive = fields.find("keep_alive")) {
    spec.keep_alive = boolean(*keep_alive, "http.keep_alive");
    if (!spec.keep_alive && spec.engine == HttpSpec::Engine::Nghttp2)
      fail(*keep_alive, "http.keep_alive",
           "false is for HTTP/1.1; the nghttp2 engine keeps its HTTP/2 connections (use engine: "
           "curl for a connection per request)");
  }
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
    spec.tls = tlsSpec(*tls, "http.tls");
  return spec;
}

TlsSpec Loader::tlsSpec(const Field& f, const std::string& where) {
  const Fields fields = mapping(f, where, {"verify", "ca", "cert", "key"});
  TlsSpec spec;
  if (const Field* verify = fields.find("verify"))
    spec.verify = boolean(*verify, where + ".verify");
  const Field* cert = fields.find("cert");
  const Field* key = fields.find("key");
  if (cert && !key)
    fail(cert->key.Mark(), where + ".cert",
         "a client certificate needs its private key: add key: to " + where);
  if (key && !cert)
    fail(key->key.Mark(), where + ".key",
         "a private key needs its client certificate: add cert: to " + where);
  auto pem = [&](const Field* field, const char* name, std::string& file, std::string& text) {
    if (field == nullptr)
      return;
    const std::string path = where + "." + name;
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

} // namespace stampede::common::scenario_loader
