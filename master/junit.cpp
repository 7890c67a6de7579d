#include "master/junit.h"

#include "common/text.h"

#include <fmt/format.h>

#include <string_view>

namespace stampede::master {
namespace {

using nlohmann::json;

std::string text(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null())
    return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

double number(const json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
}

// The first error as the console's block gives it: where, what, and the response.
std::string errorContext(const json& e) {
  std::string out = fmt::format("worker {}, virtual user {}, flow \"{}\", step \"{}\"\n",
                                text(e, "worker"), text(e, "vu"), text(e, "flow"), text(e, "step"));
  out += fmt::format("{} {}\nstatus {} ({}): {}\nat {:.3f}s ({})\n", text(e, "method"),
                     text(e, "url"), text(e, "status"), text(e, "error_kind"), text(e, "detail"),
                     number(e, "at_s"), text(e, "at"));
  if (e.contains("headers") && e["headers"].is_object())
    for (const auto& [name, value] : e["headers"].items())
      out += fmt::format("{}: {}\n", name, value.is_string() ? value.get<std::string>() : "");
  if (!text(e, "body").empty())
    out += "\n" + text(e, "body") + "\n";
  return out;
}

std::string firstErrorMessage(const json& e) {
  return fmt::format("{} {} {}: {} (step \"{}\")", text(e, "method"), text(e, "url"),
                     text(e, "error_kind"), text(e, "detail"), text(e, "step"));
}

// The halts an error caused: the expectations failed.
bool haltedOnError(const std::string& reason) {
  return reason == "first_error" || reason == "error_count" || reason == "error_rate" ||
         reason == "data_exhausted";
}

struct Case {
  std::string name;
  std::string classname;
  double time_s = 0;
  std::string failure_message; // non-empty: <failure>
  std::string failure_type;
  std::string failure_text;
  std::string error_message; // non-empty: <error> (the run itself went wrong)
  std::string system_out;
};

std::string caseXml(const Case& c) {
  std::string out =
      fmt::format("    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3f}\"",
                  common::markupEscape(c.name), common::markupEscape(c.classname), c.time_s);
  if (c.failure_message.empty() && c.error_message.empty() && c.system_out.empty())
    return out + "/>\n";
  out += ">\n";
  if (!c.failure_message.empty())
    out += fmt::format("      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                       common::markupEscape(c.failure_message),
                       common::markupEscape(c.failure_type), common::markupEscape(c.failure_text));
  if (!c.error_message.empty())
    out += fmt::format("      <error message=\"{}\" type=\"run\"/>\n",
                       common::markupEscape(c.error_message));
  if (!c.system_out.empty())
    out += fmt::format("      <system-out>{}</system-out>\n", common::markupEscape(c.system_out));
  return out + "    </testcase>\n";
}

} // namespace

std::string junitXml(const json& report) {
  const std::string name = text(report, "name").empty() ? "stampede" : text(report, "name");
  const std::string classname = "stampede." + name;
  const double duration_s = number(report, "duration_s");
  const json& halt = report.contains("halt") ? report["halt"] : json(nullptr);
  const json& first = report.contains("first_error") ? report["first_error"] : json(nullptr);
  const std::string reason = text(halt, "reason");
  const json totals = report.value("totals", json::object());

  std::vector<Case> cases;
  Case expectations;
  expectations.name = "expectations";
  expectations.classname = classname;
  expectations.time_s = duration_s;
  expectations.system_out =
      fmt::format("{} requests, {} errors, outcome {}, exit code {}", text(totals, "requests"),
                  text(totals, "errors"), text(report, "outcome"), text(report, "exit_code"));
  if (halt.is_object() && haltedOnError(reason)) {
    expectations.failure_type = reason;
    if (first.is_object()) {
      expectations.failure_message = firstErrorMessage(first);
      expectations.failure_text = errorContext(first);
    } else {
      expectations.failure_message = fmt::format("halted: {} ({})", reason, text(halt, "value"));
    }
  } else if (halt.is_object() && reason != "threshold") {
    // Interrupted, or a worker lost: no verdict on the target, the run itself did not finish.
    expectations.error_message = fmt::format("the run halted: {}", reason);
  } else if (text(report, "exit_code") == "3") {
    // An output that could not be written (the outcome itself may say passed).
    std::string warnings;
    for (const auto& w : report.value("warnings", json::array()))
      warnings += (warnings.empty() ? "" : "; ") + (w.is_string() ? w.get<std::string>() : "");
    expectations.error_message = "the run failed: " + warnings;
  }
  if (first.is_object() && expectations.failure_message.empty())
    expectations.system_out += "\nfirst error (not halting): " + firstErrorMessage(first);
  cases.push_back(std::move(expectations));

  for (const auto& t : report.value("thresholds", json::array())) {
    Case c;
    c.name = text(t, "expr");
    c.classname = classname + ".thresholds";
    const std::string value = t.contains("value") && !t["value"].is_null()
                                  ? fmt::format("{:g}", t["value"].get<double>())
                                  : "no data";
    if (!t.value("passed", true)) {
      c.failure_message = fmt::format("{}: value {}", text(t, "expr"), value);
      c.failure_type = t.value("abort", false) ? "threshold_abort" : "threshold";
      c.failure_text =
          fmt::format("over {}, value {}",
                      number(t, "window_s") > 0 ? fmt::format("a {}s window", number(t, "window_s"))
                                                : std::string("the whole run"),
                      value);
    } else {
      c.system_out = "value " + value;
    }
    cases.push_back(std::move(c));
  }

  size_t failures = 0;
  size_t errors = 0;
  for (const auto& c : cases) {
    failures += c.failure_message.empty() ? 0 : 1;
    errors += c.error_message.empty() ? 0 : 1;
  }
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += fmt::format("<testsuites name=\"stampede\" tests=\"{}\" failures=\"{}\" errors=\"{}\" "
                     "time=\"{:.3f}\">\n",
                     cases.size(), failures, errors, duration_s);
  std::string timestamp = text(report, "started_at");
  if (!timestamp.empty() && timestamp.back() == 'Z')
    timestamp.pop_back(); // xs:dateTime allows Z, but Jenkins' schema wants local time
  out += fmt::format("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" "
                     "skipped=\"0\" time=\"{:.3f}\"{}>\n",
                     common::markupEscape(name), cases.size(), failures, errors, duration_s,
                     timestamp.empty() ? "" : fmt::format(" timestamp=\"{}\"", timestamp));
  out += "    <properties>\n";
  for (const char* key : {"scenario_file", "outcome", "exit_code"})
    out += fmt::format("      <property name=\"{}\" value=\"{}\"/>\n", key,
                       common::markupEscape(text(report, key)));
  out += "    </properties>\n";
  for (const auto& c : cases)
    out += caseXml(c);
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

} // namespace stampede::master
