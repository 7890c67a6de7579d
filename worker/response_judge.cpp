#include "worker/response_judge.h"

#include "common/json_path.h"

#include <optional>
#include <regex>

namespace stampede::worker {

using common::Step;

const char* judge(const Step& step, const HttpResponse& response, const HttpSession& session,
                  int64_t service_us, std::vector<std::string>& slots, std::string& error_kind,
                  std::string& detail) {
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
  for (const auto& want : expect.json) {
    const nlohmann::json* root = json();
    const nlohmann::json* value = root ? common::findJson(*root, want.path) : nullptr;
    if (value == nullptr) {
      detail = root ? want.path.text + " not found in the body" : "body is not JSON";
      return "expect_json";
    }
    const std::string got = value->dump();
    if (got != want.expected_json) {
      detail = want.path.text + " is " + got + ", expected " + want.expected_json;
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
