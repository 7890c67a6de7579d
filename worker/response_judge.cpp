#include "worker/response_judge.h"

#include "common/json_path.h"

#include <cmath>
#include <optional>
#include <regex>

namespace stampede::worker {

using common::Step;
using nlohmann::json;

namespace {

// Whether value.dump() == want.dump() for a plain `want` (a number, string, boolean or null:
// what the loader allows), without writing either. Integers compare by value whether parsed
// signed or unsigned (both dump as digits); a float never equals an integer (1.0 is not 1) and
// floats compare by value and sign (0.0 is not -0.0; parsed JSON has no NaN or infinity).
bool sameCompactText(const json& value, const json& want) {
  const auto integer = [](const json& j) {
    return j.is_number_integer(); // signed or unsigned
  };
  if (integer(value) && integer(want)) {
    const bool u = value.is_number_unsigned();
    if (u == want.is_number_unsigned())
      return u ? value.get<uint64_t>() == want.get<uint64_t>()
               : value.get<int64_t>() == want.get<int64_t>();
    const int64_t i = u ? want.get<int64_t>() : value.get<int64_t>();
    return i >= 0 && uint64_t(i) == (u ? value : want).get<uint64_t>();
  }
  if (value.type() != want.type())
    return false;
  if (want.is_number_float()) {
    const double x = value.get<double>();
    const double y = want.get<double>();
    return x == y && std::signbit(x) == std::signbit(y);
  }
  return value == want; // null, boolean, string (dump's escaping is one-to-one)
}

} // namespace

JsonExpectations::JsonExpectations(const common::Scenario& scenario) {
  for (const auto& flow : scenario.flows)
    add(flow.steps);
}

void JsonExpectations::add(const std::vector<Step>& steps) {
  for (const Step& step : steps) {
    if (step.kind == Step::Kind::Loop)
      add(step.steps);
    if (step.expect.json.empty())
      continue;
    auto& values = by_step_[&step];
    for (const auto& want : step.expect.json) {
      json value = json::parse(want.expected_json, nullptr, false);
      // Only a plain value whose text it dumps back to exactly may stand for it.
      if (value.is_discarded() || value.is_structured() || value.dump() != want.expected_json)
        values.emplace_back();
      else
        values.emplace_back(std::move(value));
    }
  }
}

const std::vector<std::optional<json>>* JsonExpectations::of(const Step& step) const {
  const auto it = by_step_.find(&step);
  return it == by_step_.end() ? nullptr : &it->second;
}

const char* judge(const Step& step, const JsonExpectations& expected, const HttpResponse& response,
                  const HttpSession& session, int64_t service_us, std::vector<std::string>& slots,
                  std::string& error_kind, std::string& detail) {
  const auto& expect = step.expect;
  if (!expect.allows(response.status)) {
    error_kind.assign("http_");
    error_kind.append(std::to_string(response.status));
    detail = "status " + std::to_string(response.status) + " not allowed by expect";
    return error_kind.c_str();
  }
  if (expect.body_contains && response.body.find(*expect.body_contains) == std::string_view::npos) {
    detail = "body does not contain \"" + *expect.body_contains + "\"";
    return "expect_body";
  }
  // The body is parsed once, and only when something reads it as JSON.
  std::optional<nlohmann::json> document;
  bool parsed = false;
  auto json = [&]() -> const nlohmann::json* {
    if (!parsed) {
      parsed = true;
      document = common::parseJsonBody(response.body);
    }
    return document ? &*document : nullptr;
  };
  const auto* parsed_wants = expect.json.empty() ? nullptr : expected.of(step);
  for (size_t i = 0; i < expect.json.size(); ++i) {
    const auto& want = expect.json[i];
    const nlohmann::json* root = json();
    const nlohmann::json* value = root ? common::findJson(*root, want.path) : nullptr;
    if (value == nullptr) {
      detail = root ? want.path.text + " not found in the body" : "body is not JSON";
      return "expect_json";
    }
    const std::optional<nlohmann::json>* parsed_want =
        parsed_wants && i < parsed_wants->size() ? &(*parsed_wants)[i] : nullptr;
    const bool same = parsed_want && *parsed_want ? sameCompactText(*value, **parsed_want)
                                                  : value->dump() == want.expected_json;
    if (!same) {
      detail = want.path.text + " is " + value->dump() + ", expected " + want.expected_json;
      return "expect_json";
    }
  }
  for (const auto& want : expect.header) {
    const auto value = session.header(want.name);
    if (!value || value->find(want.contains) == std::string_view::npos) {
      detail = value ? "header " + want.name + " is \"" + std::string(*value) +
                           "\", expected it to contain \"" + want.contains + "\""
                     : "header " + want.name + " is missing";
      return "expect_header";
    }
  }
  if (expect.max_latency && service_us > expect.max_latency->count()) {
    detail = "took " + std::to_string(service_us / 1000) + " ms, max_latency is " +
             std::to_string(expect.max_latency->count() / 1000) + " ms";
    return "expect_latency";
  }
  for (const auto& capture : step.captures) {
    std::string& slot = slots[capture.slot];
    bool found = false;
    switch (capture.kind) {
    case common::Capture::Kind::Json:
      if (const nlohmann::json* root = json()) {
        if (const nlohmann::json* value = common::findJson(*root, capture.json)) {
          slot = common::jsonCaptureText(*value);
          found = true;
        }
      }
      break;
    case common::Capture::Kind::Header:
      if (auto value = session.header(capture.header)) {
        slot.assign(*value);
        found = true;
      }
      break;
    case common::Capture::Kind::Regex: {
      std::match_results<std::string_view::const_iterator> match;
      if (std::regex_search(response.body.begin(), response.body.end(), match, *capture.regex) &&
          match.size() > 1 && match[1].matched) {
        slot.assign(match[1].first, match[1].second);
        found = true;
      }
      break;
    }
    }
    if (!found) {
      slot.clear();
      detail = "capture '" + capture.name + "' found nothing";
      return "capture_missing";
    }
  }
  return nullptr;
}

} // namespace stampede::worker
