#include "common/scenario_loader_internal.h"

namespace stampede::common::scenario_loader {

std::vector<Flow> Loader::flows(const Field& f) {
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
    const Fields fields =
        checkKeys(node, path, {"name", "weight", "think", "users", "load", "steps"});
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
    if (const Field* users = fields.find("users"))
      flow.users = positiveCount(*users, join(path, "users"));
    if (const Field* load = fields.find("load")) {
      if (const Field* users = fields.find("users"))
        fail(users->key.Mark(), join(path, "users"),
             "use either users: (this flow's share of the scenario-wide load.users) or load: "
             "(a load of its own), not both");
      flow.load = loadSpec(*load, join(path, "load"));
    }

    FlowScope scope;
    scope.index = i;
    scope_ = &scope;
    const Field& steps = *fields.find("steps");
    flow.steps = stepList(steps, join(path, "steps"), 0);
    scope_ = nullptr;
    if (!scope.first_request)
      fail(steps, join(path, "steps"),
           "a flow needs at least one request step (get, post, put, patch, delete, head, "
           "options, publish or subscribe)");
    flow.first_request_stats_index = *scope.first_request;
    flow.feeders.assign(scope.feeders.begin(), scope.feeders.end());
    out.push_back(std::move(flow));
  }
  return out;
}

std::vector<Step> Loader::stepList(const Field& f, const std::string& path, int depth) {
  if (!f.value.IsSequence() || f.value.size() == 0)
    fail(f, path, "expected a non-empty list of steps, got " + describe(f.value));
  std::vector<Step> out;
  for (size_t j = 0; j < f.value.size(); ++j)
    out.push_back(step(f.value[j], indexed(path, j), depth));
  return out;
}

Step Loader::step(const YAML::Node& node, const std::string& path, int depth) {
  if (!node.IsMap())
    fail(node.Mark(), path,
         "a step is a mapping like {get: /path}, {think: 1s} or {loop: 3, steps: [...]}, got " +
             describe(node));
  const Fields fields = checkKeys(node, path, kStepKeys);

  const Field* action = nullptr;
  for (const Field& f : fields.all()) {
    if (f.name != "think" && f.name != "loop" && f.name != "publish" && f.name != "subscribe" &&
        !isMethod(f.name))
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
  } else if (action->name == "publish") {
    refuseOthers(fields, path, {"publish", "name"}, "a publish step");
    publishStep(s, *action, fields, path);
  } else if (action->name == "subscribe") {
    refuseOthers(fields, path, {"subscribe", "name"}, "a subscribe step");
    subscribeStep(s, *action, fields, path);
  } else {
    refuseOthers(fields, path,
                 {action->name, "name", "headers", "query", "body", "json", "form", "timeout",
                  "expect", "capture"},
                 "a request step");
    request(s, *action, fields, path);
  }
  return s;
}

void Loader::refuseOthers(const Fields& fields, const std::string& path,
                          std::initializer_list<std::string_view> allowed,
                          const std::string& what) const {
  for (const Field& f : fields.all())
    if (std::find(allowed.begin(), allowed.end(), f.name) == allowed.end())
      fail(f.key.Mark(), join(path, f.name),
           "'" + f.name + "' does not belong in " + what +
               (f.name == "steps" ? " (only a loop step has steps)" : ""));
}

void Loader::request(Step& s, const Field& action, const Fields& fields, const std::string& path) {
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
           "expected a string, got " + describe(body->value) + " (use json: for structured data)");
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

Template Loader::jsonBody(const Field& json, const std::string& path) {
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

bool Loader::hasStepHeader(const std::vector<std::pair<std::string, Template>>& headers,
                           std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return iequals(h.first, name); });
}

bool Loader::hasHeader(const std::vector<std::pair<std::string, Template>>& headers,
                       std::string_view name) const {
  return hasStepHeader(headers, name) ||
         std::any_of(default_header_names_.begin(), default_header_names_.end(),
                     [&](const std::string& n) { return iequals(n, name); });
}

std::vector<Capture> Loader::captures(const Field& f, const std::string& path) const {
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
      fail(entry, capture_path, std::string("expected ") + kForms + ", got " + describe(kv.second));
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

Expect Loader::expectSpec(const Field& f, const std::string& path) const {
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

std::vector<int> Loader::statusList(const Field& status, const std::string& path) const {
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

std::vector<Expect::JsonValue> Loader::expectJson(const Field& f, const std::string& path) const {
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
    std::string expected = "null";
    if (kv.second.IsScalar()) {
      try {
        expected = scalarToJson(kv.second).dump();
      } catch (const nlohmann::json::exception& e) {
        fail(kv.second.Mark(), item_path, std::string("cannot be written as JSON: ") + e.what());
      }
    }
    out.push_back(Expect::JsonValue{std::move(*json_path), expected});
  }
  return out;
}

std::vector<Expect::HeaderValue> Loader::expectHeader(const Field& f,
                                                      const std::string& path) const {
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

void Loader::writeJson(const YAML::Node& node, const std::string& path, std::string& out) const {
  switch (node.Type()) {
  case YAML::NodeType::Map: {
    std::unordered_set<std::string> keys;
    out += '{';
    for (const auto& kv : node) {
      if (!kv.first.IsScalar())
        fail(kv.first.Mark(), path, "a JSON key is a name or a string, got " + describe(kv.first));
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

nlohmann::ordered_json Loader::scalarToJson(const YAML::Node& node) {
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

} // namespace stampede::common::scenario_loader
