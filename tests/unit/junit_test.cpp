#include "master/junit.h"

#include <catch2/catch.hpp>

using nlohmann::json;
using stampede::master::junitXml;

namespace {

json report(json halt, json first_error, std::string outcome, int exit_code) {
  return {{"name", "n<&>"},
          {"outcome", outcome},
          {"exit_code", exit_code},
          {"duration_s", 1.5},
          {"started_at", "2026-12-01T10:00:00.000Z"},
          {"totals", {{"requests", 10}, {"errors", 1}}},
          {"halt", halt},
          {"first_error", first_error},
          {"thresholds", json::array()},
          {"warnings", json::array({"out of disk"})}};
}

} // namespace

TEST_CASE("junit.xml: an interrupted run is an error, not a failure of the target", "[junit]") {
  const auto xml = junitXml(report({{"reason", "interrupted"}}, nullptr, "halted", 130));
  CHECK_THAT(xml, Catch::Contains("<error message=\"the run halted: interrupted\""));
  CHECK_THAT(xml, Catch::Contains("failures=\"0\" errors=\"1\""));
  CHECK(xml.find("<failure") == std::string::npos);
  // Names are escaped; the timestamp is a local date-time, as Jenkins' schema wants.
  CHECK_THAT(xml, Catch::Contains("<testsuite name=\"n&lt;&amp;&gt;\""));
  CHECK_THAT(xml, Catch::Contains("timestamp=\"2026-12-01T10:00:00.000\""));
}

TEST_CASE("junit.xml: errors allowed by on_error never pass, with the first error noted",
          "[junit]") {
  json first = {
      {"method", "GET"}, {"url", "http://x/\x01"}, {"error_kind", "http_500"}, {"detail", "d"},
      {"step", "s"},     {"status", 500}};
  const auto xml = junitXml(report(nullptr, first, "passed", 0));
  CHECK(xml.find("<failure") == std::string::npos);
  CHECK_THAT(xml, Catch::Contains("first error (not halting): GET http://x/\\x01 http_500"));
}

TEST_CASE("junit.xml: an output that could not be written is an error", "[junit]") {
  const auto xml = junitXml(report(nullptr, nullptr, "passed", 3));
  CHECK_THAT(xml, Catch::Contains("<error message=\"the run failed: out of disk\""));
}
