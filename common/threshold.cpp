#include "common/threshold.h"

#include "common/units.h"

#include <array>
#include <cctype>
#include <charconv>
#include <utility>

namespace stampede::common {
namespace {

constexpr std::array<std::pair<std::string_view, Threshold::Metric>, 10> kMetrics{{
    {"p50", Threshold::Metric::P50},
    {"p90", Threshold::Metric::P90},
    {"p95", Threshold::Metric::P95},
    {"p999", Threshold::Metric::P999},
    {"p99", Threshold::Metric::P99},
    {"max", Threshold::Metric::Max},
    {"mean", Threshold::Metric::Mean},
    {"error_rate", Threshold::Metric::ErrorRate},
    {"rps", Threshold::Metric::Rps},
    {"dropped", Threshold::Metric::Dropped},
}};

struct Cursor {
  std::string_view text;
  size_t pos = 0;
  void skipSpace() {
    while (pos < text.size() && std::isspace(static_cast<unsigned char>(text[pos])))
      ++pos;
  }
  bool eat(std::string_view token) {
    skipSpace();
    if (text.substr(pos, token.size()) != token)
      return false;
    pos += token.size();
    return true;
  }
  std::string_view word() {
    skipSpace();
    size_t start = pos;
    while (pos < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[pos])) || text[pos] == '_'))
      ++pos;
    return text.substr(start, pos - start);
  }
};

std::optional<double> parseNumber(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

} // namespace

bool Threshold::holds(double observed) const {
  switch (op) {
  case Op::Less:
    return observed < value;
  case Op::LessEqual:
    return observed <= value;
  case Op::Greater:
    return observed > value;
  case Op::GreaterEqual:
    return observed >= value;
  }
  return false;
}

std::optional<Threshold> parseThreshold(std::string_view expr, std::string& error, size_t& offset) {
  Threshold t;
  t.expr = std::string(expr);
  Cursor c{expr};
  auto fail = [&](size_t at, std::string message) -> std::optional<Threshold> {
    offset = at;
    error = std::move(message);
    return std::nullopt;
  };

  c.skipSpace();
  const size_t metric_at = c.pos;
  auto metric = c.word();
  bool known = false;
  for (const auto& [name, m] : kMetrics) {
    if (name == metric) {
      t.metric = m;
      known = true;
    }
  }
  if (!known)
    return fail(metric_at, "unknown metric '" + std::string(metric) +
                               "' (expected p50 p90 p95 p99 p999 max mean error_rate rps dropped)");

  if (c.eat("{")) {
    const size_t key_at = c.pos;
    if (c.word() != "step" || !c.eat(":"))
      return fail(key_at, "expected {step: NAME}");
    c.skipSpace();
    size_t close = expr.find('}', c.pos);
    if (close == expr.npos)
      return fail(c.pos, "missing '}'");
    auto name = expr.substr(c.pos, close - c.pos);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back())))
      name.remove_suffix(1);
    if (name.size() >= 2 && (name.front() == '"' || name.front() == '\'') &&
        name.back() == name.front())
      name = name.substr(1, name.size() - 2);
    if (name.empty())
      return fail(c.pos, "empty step name");
    t.step = std::string(name);
    c.pos = close + 1;
  }

  c.skipSpace();
  const size_t op_at = c.pos;
  if (c.eat("<="))
    t.op = Threshold::Op::LessEqual;
  else if (c.eat(">="))
    t.op = Threshold::Op::GreaterEqual;
  else if (c.eat("<"))
    t.op = Threshold::Op::Less;
  else if (c.eat(">"))
    t.op = Threshold::Op::Greater;
  else
    return fail(op_at, "expected one of < <= > >=");

  c.skipSpace();
  const size_t value_at = c.pos;
  auto value = expr.substr(c.pos);
  while (!value.empty() && std::isspace(static_cast<unsigned char>(value.back())))
    value.remove_suffix(1);
  if (value.empty())
    return fail(value_at, "missing value");

  if (t.isLatency()) {
    auto d = parseDuration(value);
    if (!d)
      return fail(value_at, "expected a duration such as 250ms, got '" + std::string(value) + "'");
    t.value = double(d->count()) / 1000.0;
  } else if (t.metric == Threshold::Metric::ErrorRate) {
    bool percent = value.back() == '%';
    auto number = parseNumber(percent ? value.substr(0, value.size() - 1) : value);
    if (!number || *number < 0 || (percent ? *number > 100 : *number > 1))
      return fail(value_at, "expected a percentage such as 0.5% (or a fraction 0..1), got '" +
                                std::string(value) + "'");
    t.value = percent ? *number / 100.0 : *number;
  } else if (t.metric == Threshold::Metric::Rps) {
    auto rate = value.find('/') != value.npos ? parseRate(value) : parseNumber(value);
    if (!rate || *rate < 0)
      return fail(value_at,
                  "expected a rate such as 100 or 100/s, got '" + std::string(value) + "'");
    t.value = *rate;
  } else {
    auto number = parseNumber(value);
    if (!number || *number < 0)
      return fail(value_at, "expected a count, got '" + std::string(value) + "'");
    t.value = *number;
  }
  return t;
}

} // namespace stampede::common
