#include "common/scenario.h"

#include "common/config_error.h"
#include "common/units.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <span>
#include <sstream>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace stampede::common {

// ---------------------------------------------------------------------------------------------
// Endpoint and Expect

namespace {

bool iequalsPrefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size())
    return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(text[i])) != prefix[i])
      return false;
  return true;
}

bool isAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool isHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

} // namespace

std::optional<Endpoint> parseEndpoint(std::string_view url) {
  Endpoint e;
  if (iequalsPrefix(url, "http://")) {
    e.scheme = "http";
    e.port = 80;
    url.remove_prefix(7);
  } else if (iequalsPrefix(url, "https://")) {
    e.scheme = "https";
    e.port = 443;
    url.remove_prefix(8);
  } else {
    return std::nullopt;
  }
  // A base URL is joined with step paths, so a query or fragment in it has no sensible meaning.
  if (url.find_first_of("?#") != std::string_view::npos)
    return std::nullopt;
  const size_t slash = url.find('/');
  const std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);

  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    // IPv6 literal; the brackets are URL syntax, not part of the address.
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return std::nullopt;
      has_port = true;
      port = after.substr(1);
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(),
                                     [](char c) { return isHex(c) || c == ':' || c == '.'; }))
      return std::nullopt;
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port = authority.substr(colon + 1);
    }
    // Userinfo ("user:pw@host") is refused: credentials belong in headers, not in reports.
    if (host.empty() || !std::all_of(host.begin(), host.end(), [](char c) {
          return isAlnum(c) || c == '-' || c == '.' || c == '_';
        }))
      return std::nullopt;
  }
  if (has_port) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 ||
        value > 65535)
      return std::nullopt;
    e.port = static_cast<uint16_t>(value);
  }
  if (std::any_of(path.begin(), path.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; }))
    return std::nullopt;
  while (!path.empty() && path.back() == '/')
    path.remove_suffix(1);
  e.host = std::string(host);
  e.base_path = std::string(path);
  return e;
}

bool Expect::allows(int code) const {
  if (status.empty())
    return code >= 100 && code < 400;
  return std::find(status.begin(), status.end(), code) != status.end();
}

// ---------------------------------------------------------------------------------------------
// The loader

namespace {

constexpr int kMaxLoopDepth = 16; // deeper is a mistake, and bounds the engine's recursion

constexpr std::string_view kBuiltinNames[] = {
    "uuid", "random_int", "random_string", "now_ms", "env", "worker_index", "vu", "iteration"};

constexpr std::string_view kMethods[] = {"get", "post", "put", "delete"};

// A key that SCENARIO.md defines but this version does not implement, with what to say.
struct Unsupported {
  std::string_view key;
  std::string_view hint;
};

size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " (did you mean 'x'?)" when one candidate is within two edits, else "".
std::string didYouMean(std::string_view word, std::span<const std::string_view> candidates) {
  std::string_view best;
  size_t best_distance = 3;
  for (std::string_view c : candidates) {
    const size_t d = editDistance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best.empty() ? std::string() : " (did you mean '" + std::string(best) + "'?)";
}

std::string didYouMean(std::string_view word, std::initializer_list<std::string_view> candidates) {
  return didYouMean(word, std::span<const std::string_view>(candidates.begin(), candidates.size()));
}

std::string quoteValue(std::string_view text) {
  size_t kMax = 60; // keep one-line errors one line
  // ... but never split a UTF-8 character: the message may travel in a protobuf string.
  while (kMax < text.size() && kMax > 0 && (static_cast<unsigned char>(text[kMax]) & 0xc0) == 0x80)
    --kMax;
  std::string out = "\"";
  for (char c : text.substr(0, kMax)) {
    if (c == '\n')
      out += "\\n";
    else if (c == '"')
      out += "\\\"";
    else
      out += c;
  }
  if (text.size() > kMax)
    out += "...";
  return out + "\"";
}

// What a node is, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
  case YAML::NodeType::Null:
  case YAML::NodeType::Undefined:
    return "nothing";
  case YAML::NodeType::Scalar:
    return quoteValue(node.Scalar());
  case YAML::NodeType::Sequence:
    return "a list";
  case YAML::NodeType::Map:
    return "a mapping";
  }
  return "something else";
}

std::string join(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string indexed(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

bool isIdentifier(std::string_view name) {
  if (name.empty() || !(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_'))
    return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return isAlnum(c) || c == '_'; });
}

// RFC 9110 token characters.
bool isHeaderName(std::string_view name) {
  constexpr std::string_view kExtra = "!#$%&'*+-.^_`|~";
  return !name.empty() && std::all_of(name.begin(), name.end(), [&](char c) {
    return isAlnum(c) || kExtra.find(c) != std::string_view::npos;
  });
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string upper(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

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

class Loader {
public:
  Loader(const std::string& file, const std::string& text,
         const std::map<std::string, std::string>* shipped_env)
      : file_(file), text_(text) {
    env_.shipped = shipped_env;
    env_.used = &env_used_;
  }

  Scenario load(const YAML::Node& root) {
    Scenario s;
    s.file = file_;
    s.source_text = text_;
    if (!root.IsMap())
      fail(root.Mark(), "",
           "a scenario is a mapping of keys (name:, target:, load:, flows:, ...), got " +
               describe(root));
    const Fields top =
        checkKeys(root, "", {"name", "target", "load", "halt", "http", "variables", "flows"},
                  {{"data", "data feeders are not supported yet"}});
    requireKeys(root, "", top, {"name", "target", "load", "flows"});

    s.name = string(*top.find("name"), "name");
    if (s.name.empty())
      fail(*top.find("name"), "name", "must not be empty");
    s.target = target(*top.find("target"));
    s.load = load(*top.find("load"));
    if (const Field* f = top.find("variables"))
      variables_ = variables(*f);
    s.variables = variables_;
    if (const Field* f = top.find("http"))
      s.http = http(*f);
    s.flows = flows(*top.find("flows"));
    // After the flows: thresholds may name steps.
    if (const Field* f = top.find("halt"))
      s.halt = halt(*f);
    s.step_table = std::move(step_table_);
    s.env = env_used_;
    return s;
  }

private:
  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& path,
                         const std::string& message) const {
    const int line = mark.is_null() ? 0 : mark.line + 1;
    const int column = mark.is_null() ? 0 : mark.column + 1;
    throw ConfigError(file_, line, column, path, message);
  }
  // At the value, except when there is none: then at its key, which is where the eye goes.
  [[noreturn]] void fail(const Field& f, const std::string& path,
                         const std::string& message) const {
    fail(f.value.IsNull() ? f.key.Mark() : f.value.Mark(), path, message);
  }

  // Checks the keys of a mapping and returns its fields. Refuses duplicates, keys that are
  // not implemented yet, and unknown keys (with a suggestion).
  Fields checkKeys(const YAML::Node& map, const std::string& path,
                   std::initializer_list<std::string_view> known,
                   std::initializer_list<Unsupported> unsupported) const {
    Fields fields;
    for (const auto& kv : map) {
      const YAML::Node& key = kv.first;
      if (!key.IsScalar())
        fail(key.Mark(), path, "keys must be plain names, got " + describe(key));
      const std::string name = key.Scalar();
      const std::string key_path = join(path, name);
      if (fields.find(name) != nullptr)
        fail(key.Mark(), key_path, "duplicate key '" + name + "'");
      for (const auto& u : unsupported)
        if (u.key == name)
          fail(key.Mark(), key_path, std::string(u.hint));
      if (std::find(known.begin(), known.end(), name) == known.end())
        fail(key.Mark(), key_path, "unknown key '" + name + "'" + didYouMean(name, known));
      fields.add(Field{name, key, kv.second});
    }
    return fields;
  }

  void requireKeys(const YAML::Node& map, const std::string& path, const Fields& fields,
                   std::initializer_list<std::string_view> required) const {
    for (std::string_view name : required)
      if (fields.find(name) == nullptr)
        fail(map.Mark(), join(path, name), "required key '" + std::string(name) + "' is missing");
  }

  Fields mapping(const Field& f, const std::string& path,
                 std::initializer_list<std::string_view> known,
                 std::initializer_list<Unsupported> unsupported) const {
    if (!f.value.IsMap())
      fail(f, path, "expected a mapping, got " + describe(f.value));
    return checkKeys(f.value, path, known, unsupported);
  }

  std::string string(const Field& f, const std::string& path) const {
    if (!f.value.IsScalar())
      fail(f, path, "expected a string, got " + describe(f.value));
    return f.value.Scalar();
  }

  int64_t integer(const YAML::Node& node, const YAML::Mark& mark, const std::string& path,
                  const std::string& expected) const {
    if (node.IsScalar()) {
      const std::string& text = node.Scalar();
      int64_t value = 0;
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (ec == std::errc::result_out_of_range)
        fail(mark, path, "number out of range: " + text);
      if (ec == std::errc() && ptr == text.data() + text.size() && !text.empty())
        return value;
    }
    fail(mark, path, "expected " + expected + ", got " + describe(node));
  }

  int positiveInt(const Field& f, const std::string& path) const {
    const YAML::Mark mark = f.value.IsNull() ? f.key.Mark() : f.value.Mark();
    const int64_t value = integer(f.value, mark, path, "an integer");
    if (value <= 0 || value > std::numeric_limits<int>::max())
      fail(mark, path, "must be a positive integer, got " + std::to_string(value));
    return static_cast<int>(value);
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

  ThinkTime think(const Field& f, const std::string& path) const {
    constexpr const char* kExpected =
        "expected a duration like 250ms or a range like 100ms..500ms, got ";
    if (!f.value.IsScalar())
      fail(f, path, kExpected + describe(f.value));
    const std::string& text = f.value.Scalar();
    if (text.rfind("exp(", 0) == 0)
      fail(f, path, "exponential think time (exp(...)) is not supported yet");
    auto one = [&](std::string_view part) {
      if (!part.empty() && part.front() == '-')
        fail(f, path, "a think time cannot be negative, got " + quoteValue(text));
      const auto d = parseDuration(part);
      if (!d)
        fail(f, path, kExpected + quoteValue(text));
      return *d;
    };
    ThinkTime t;
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

  Template compileScalar(const YAML::Node& scalar, const std::string& path) const {
    try {
      return Template::compile(scalar.Scalar(), variables_, env_);
    } catch (const TemplateError& e) {
      fail(markAt(scalar, e.offset()), path, e.what());
    }
  }

  // A sample rendering, for checks on what a template will look like (URL shape).
  static std::string sample(const Template& t) {
    std::mt19937_64 rng(1);
    RenderContext ctx;
    ctx.rng = &rng;
    return t.render(ctx);
  }

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

  LoadSpec load(const Field& f) const {
    const Fields fields =
        mapping(f, "load", {"users", "ramp", "duration"},
                {{"rate", "the open model (rate) is not supported yet; use users"},
                 {"max_in_flight", "not supported yet (it belongs to the open model)"},
                 {"stages", "stages are not supported yet; use users, ramp and duration"},
                 {"iterations", "an iteration limit is not supported yet; use duration"}});
    requireKeys(f.value, "load", fields, {"users", "duration"});
    LoadSpec spec;
    spec.users = positiveInt(*fields.find("users"), "load.users");
    if (const Field* ramp = fields.find("ramp"))
      spec.ramp = duration(*ramp, "load.ramp", false);
    spec.duration = duration(*fields.find("duration"), "load.duration", true);
    spec.stages = {Stage{false, double(spec.users), spec.ramp}, Stage{true, 0, spec.duration}};
    return spec;
  }

  HaltSpec halt(const Field& f) const {
    const Fields fields = mapping(f, "halt", {"on_error", "on_worker_lost", "thresholds"}, {});
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
      const Fields policy = mapping(f, path, {"count", "rate", "window"}, {});
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
        options = checkKeys(item, path, {"expr", "window", "abort"}, {});
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
        bool known = false;
        for (const auto& row : step_table_)
          known = known || row.name == threshold->step;
        if (!known) {
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
      if (std::find(std::begin(kBuiltinNames), std::end(kBuiltinNames), name) !=
          std::end(kBuiltinNames))
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

  // Parses a `headers:` mapping into compiled templates, refusing names that are not tokens,
  // duplicates (case-insensitive, as HTTP compares them) and values with line breaks.
  std::vector<std::pair<std::string, Template>> headerMap(const Field& f,
                                                          const std::string& path) const {
    if (!f.value.IsMap())
      fail(f, path, "expected a mapping of header names to values, got " + describe(f.value));
    std::vector<std::pair<std::string, Template>> out;
    for (const auto& kv : f.value) {
      const std::string name = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      const std::string header_path = join(path, name);
      if (!isHeaderName(name))
        fail(kv.first.Mark(), header_path, "not a valid header name");
      for (const auto& [existing, value] : out)
        if (iequals(existing, name))
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
    const Fields fields =
        mapping(f, "http", {"timeout", "engine", "keep_alive", "headers"},
                {{"version", "choosing the HTTP version is not supported yet (HTTP/1.1 only)"},
                 {"tls", "TLS settings are not supported yet"},
                 {"follow_redirects", "following redirects is not supported yet"}});
    HttpSpec spec;
    if (const Field* timeout = fields.find("timeout"))
      spec.timeout = duration(*timeout, "http.timeout", true);
    if (const Field* engine = fields.find("engine")) {
      const std::string value = string(*engine, "http.engine");
      if (value == "beast")
        spec.engine = HttpSpec::Engine::Beast;
      else if (value == "curl")
        spec.engine = HttpSpec::Engine::Curl;
      else
        fail(*engine, "http.engine",
             "expected beast or curl, got " + quoteValue(value) +
                 didYouMean(value, {"beast", "curl"}));
    }
    if (const Field* keep_alive = fields.find("keep_alive"))
      spec.keep_alive = boolean(*keep_alive, "http.keep_alive");
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
    return spec;
  }

  std::vector<Flow> flows(const Field& f) {
    if (!f.value.IsSequence() || f.value.size() == 0)
      fail(f, "flows", "expected a non-empty list of flows, got " + describe(f.value));
    std::vector<Flow> out;
    for (size_t i = 0; i < f.value.size(); ++i) {
      const YAML::Node node = f.value[i];
      const std::string path = indexed("flows", i);
      if (!node.IsMap())
        fail(node.Mark(), path,
             "a flow is a mapping (name:, weight:, think:, steps:), got " + describe(node));
      const Fields fields = checkKeys(node, path, {"name", "weight", "think", "steps"}, {});
      requireKeys(node, path, fields, {"steps"});
      Flow flow;
      flow.name = "flow " + std::to_string(i + 1);
      if (const Field* name = fields.find("name")) {
        flow.name = string(*name, join(path, "name"));
        if (flow.name.empty())
          fail(*name, join(path, "name"), "must not be empty");
        for (size_t k = 0; k < out.size(); ++k)
          if (out[k].name == flow.name)
            fail(*name, join(path, "name"),
                 "duplicate flow name " + quoteValue(flow.name) + " (also " + indexed("flows", k) +
                     ")");
      }
      if (const Field* weight = fields.find("weight"))
        flow.weight = positiveNumber(*weight, join(path, "weight"));
      if (const Field* think_time = fields.find("think"))
        flow.think = think(*think_time, join(path, "think"));
      const Field& steps = *fields.find("steps");
      flow.steps = stepList(steps, join(path, "steps"), 0);
      if (!hasRequest(flow.steps))
        fail(steps, join(path, "steps"),
             "a flow needs at least one request step (get, post, put or delete)");
      out.push_back(std::move(flow));
    }
    return out;
  }

  static bool hasRequest(const std::vector<Step>& steps) {
    return std::any_of(steps.begin(), steps.end(), [](const Step& s) {
      return s.kind == Step::Kind::Request || (s.kind == Step::Kind::Loop && hasRequest(s.steps));
    });
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
    const Fields fields =
        checkKeys(node, path,
                  {"get", "post", "put", "delete", "think", "loop", "steps", "name", "headers",
                   "body", "json", "expect"},
                  {{"patch", "the PATCH method is not supported yet"},
                   {"head", "the HEAD method is not supported yet"},
                   {"options", "the OPTIONS method is not supported yet"},
                   {"capture", "capture is not supported yet"},
                   {"query", "query: is not supported yet; write the query string into the path"},
                   {"form", "form: is not supported yet; use body: with a Content-Type header"},
                   {"timeout", "per-step timeouts are not supported yet; use http.timeout"}});

    const Field* action = nullptr;
    for (const Field& f : fields.all()) {
      const bool is_action =
          f.name == "think" || f.name == "loop" ||
          std::find(std::begin(kMethods), std::end(kMethods), f.name) != std::end(kMethods);
      if (!is_action)
        continue;
      if (action != nullptr)
        fail(f.key.Mark(), join(path, f.name),
             "a step has exactly one of get, post, put, delete, think or loop; this one already "
             "has '" +
                 action->name + "'");
      action = &f;
    }
    if (action == nullptr)
      fail(node.Mark(), path, "a step needs one of get, post, put, delete, think or loop");

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
      refuseOthers(fields, path, {action->name, "name", "headers", "body", "json", "expect"},
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
      fail(action, url_path,
           "expected a path starting with '/' or an absolute http:// or https:// URL, got " +
               quoteValue(url));
    }

    std::string stats_key = s.method + " " + s.url.source();
    if (const Field* name = fields.find("name")) {
      stats_key = string(*name, join(path, "name"));
      if (stats_key.empty())
        fail(*name, join(path, "name"), "must not be empty");
    }

    if (const Field* headers = fields.find("headers"))
      s.headers = headerMap(*headers, join(path, "headers"));

    const Field* body = fields.find("body");
    const Field* json = fields.find("json");
    if (body && json) {
      const Field& second = body->key.Mark().pos > json->key.Mark().pos ? *body : *json;
      fail(second.key.Mark(), join(path, second.name), "use either body or json, not both");
    }
    if (body) {
      if (!body->value.IsScalar())
        fail(*body, join(path, "body"),
             "expected a string, got " + describe(body->value) +
                 " (use json: for structured data)");
      s.body = compileScalar(body->value, join(path, "body"));
    }
    if (json) {
      if (!json->value.IsMap() && !json->value.IsSequence())
        fail(*json, join(path, "json"),
             "expected a mapping or a list, got " + describe(json->value) +
                 " (use body: for text)");
      std::string text;
      try {
        text = toJson(json->value).dump();
      } catch (const nlohmann::json::exception& e) {
        fail(*json, join(path, "json"), std::string("cannot be written as JSON: ") + e.what());
      }
      try {
        s.body = Template::compile(text, variables_, env_);
      } catch (const TemplateError& e) {
        fail(*json, join(path, "json"), e.what());
      }
      if (!hasHeader(s.headers, "Content-Type"))
        s.headers.emplace_back("Content-Type", Template::compile("application/json", {}));
    }

    if (const Field* expect = fields.find("expect"))
      s.expect = expectSpec(*expect, join(path, "expect"));

    for (const auto& [name, value] : dynamic_default_headers_)
      if (!hasStepHeader(s.headers, name))
        s.headers.emplace_back(name, value);

    auto [it, inserted] = stats_index_.emplace(stats_key, step_table_.size());
    if (inserted)
      step_table_.push_back(StepInfo{stats_key, s.method});
    s.stats_index = it->second;
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

  Expect expectSpec(const Field& f, const std::string& path) const {
    const Fields fields = mapping(f, path, {"status", "body_contains"},
                                  {{"json", "expect.json is not supported yet"},
                                   {"header", "expect.header is not supported yet"},
                                   {"max_latency", "max_latency is not supported yet"}});
    Expect e;
    if (const Field* contains = fields.find("body_contains")) {
      e.body_contains = string(*contains, join(path, "body_contains"));
      if (e.body_contains->empty())
        fail(*contains, join(path, "body_contains"), "must not be empty");
    }
    const Field* status = fields.find("status");
    if (status == nullptr)
      return e;
    const std::string status_path = join(path, "status");
    const std::string expected = "an integer or a list of integers";
    auto code = [&](const YAML::Node& node) {
      const YAML::Mark mark = node.IsNull() ? status->key.Mark() : node.Mark();
      const int64_t value = integer(node, mark, status_path, expected);
      if (value < 100 || value > 599)
        fail(mark, status_path, "an HTTP status is 100 to 599, got " + std::to_string(value));
      return static_cast<int>(value);
    };
    if (status->value.IsSequence()) {
      if (status->value.size() == 0)
        fail(*status, status_path, "expected at least one status");
      for (const auto& item : status->value)
        e.status.push_back(code(item));
    } else {
      e.status.push_back(code(status->value));
    }
    return e;
  }

  // YAML to JSON with YAML 1.2 core-schema typing of plain scalars; quoted scalars stay strings.
  static nlohmann::ordered_json toJson(const YAML::Node& node) {
    switch (node.Type()) {
    case YAML::NodeType::Map: {
      nlohmann::ordered_json out = nlohmann::ordered_json::object();
      for (const auto& kv : node)
        out[kv.first.IsScalar() ? kv.first.Scalar() : std::string("null")] = toJson(kv.second);
      return out;
    }
    case YAML::NodeType::Sequence: {
      nlohmann::ordered_json out = nlohmann::ordered_json::array();
      for (const auto& item : node)
        out.push_back(toJson(item));
      return out;
    }
    case YAML::NodeType::Scalar:
      return scalarToJson(node);
    default:
      return nullptr;
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
  EnvSource env_;
  std::map<std::string, std::string> env_used_;
  std::map<std::string, std::string> variables_;
  std::vector<std::pair<std::string, Template>> dynamic_default_headers_;
  std::vector<std::string> default_header_names_;
  std::map<std::string, size_t> stats_index_;
  std::vector<StepInfo> step_table_;
};

} // namespace

namespace {

// Walks the documents of a YAML stream without building nodes, to find a second document and
// to stop where yaml-cpp 0.7 stalls: on some stray flow tokens (a ',' at the top level) its
// parser yields empty documents at the same position forever, so LoadAll never returns.
class DocumentScan : public YAML::EventHandler {
public:
  YAML::Mark doc_start;
  YAML::Mark first_node = YAML::Mark::null_mark();
  bool has_content = false; // anything but a lone null

  void OnDocumentStart(const YAML::Mark& mark) override {
    doc_start = mark;
    first_node = YAML::Mark::null_mark();
    has_content = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, false); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark, true); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark, true);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark, true);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark, true);
  }
  void OnMapEnd() override {}

private:
  void node(const YAML::Mark& mark, bool content) {
    if (first_node.is_null())
      first_node = mark;
    has_content = has_content || content;
  }
};

[[noreturn]] void yamlError(const std::string& file_name, const YAML::Exception& e) {
  const bool known = !e.mark.is_null();
  throw ConfigError(file_name, known ? e.mark.line + 1 : 0, known ? e.mark.column + 1 : 0, "",
                    e.msg);
}

} // namespace

Scenario loadScenarioText(const std::string& yaml_text, const std::string& file_name,
                          const LoadOptions& options) {
  const std::map<std::string, std::string>* shipped_env = options.shipped_env;
  YAML::Node root;
  try {
    std::istringstream stream(yaml_text);
    YAML::Parser parser(stream);
    DocumentScan scan;
    size_t documents = 0;
    int previous_start = -1;
    while (parser.HandleNextDocument(scan)) {
      if (documents > 0 && scan.doc_start.pos == previous_start) {
        const int pos = scan.doc_start.pos;
        const std::string what = pos >= 0 && size_t(pos) < yaml_text.size()
                                     ? "'" + yaml_text.substr(pos, 1) + "'"
                                     : "text";
        throw ConfigError(file_name, scan.doc_start.line + 1, scan.doc_start.column + 1, "",
                          "unexpected " + what + " (not valid YAML here)");
      }
      previous_start = scan.doc_start.pos;
      if (documents > 0 && scan.has_content)
        throw ConfigError(file_name, scan.first_node.line + 1, scan.first_node.column + 1, "",
                          "a scenario file holds one YAML document; found another here");
      ++documents;
    }
    // The stream is known to be well-formed now; build the first document's nodes.
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    yamlError(file_name, e);
  }
  if (root.IsNull())
    throw ConfigError(file_name, 0, 0, "", "empty scenario");
  try {
    return Loader(file_name, yaml_text, shipped_env).load(root);
  } catch (const YAML::Exception& e) {
    // Not expected (the loader checks types before converting), but never let a yaml-cpp
    // exception escape as anything but a ConfigError.
    yamlError(file_name, e);
  }
}

Scenario loadScenarioFile(const std::string& path, const LoadOptions& options) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr)
    throw ConfigError(path, 0, 0, "", std::string("cannot read file: ") + std::strerror(errno));
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int error = errno;
  std::fclose(f);
  if (failed) // e.g. a directory: fopen succeeds, reading fails with EISDIR
    throw ConfigError(path, 0, 0, "", std::string("cannot read file: ") + std::strerror(error));
  return loadScenarioText(text, path, options);
}

} // namespace stampede::common
