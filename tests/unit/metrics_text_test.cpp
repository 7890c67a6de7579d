#include "master/metrics_text.h"

#include <catch2/catch.hpp>

using stampede::master::MetricsState;
using stampede::master::metricsText;

namespace {

stampede::common::Scenario oneStep() {
  stampede::common::Scenario scenario;
  scenario.name = "say \"hi\"";
  scenario.step_table.push_back({"home", "GET"});
  return scenario;
}

} // namespace

TEST_CASE("the latency histogram's buckets count each sample under the first bound above it",
          "[metrics]") {
  auto scenario = oneStep();
  stampede::common::StatsBook book(1);
  for (int64_t us : {400, 900, 3'000, 3'000, 70'000'000})
    book.steps[0].latency_us.record(us);
  book.steps[0].requests = 5;
  MetricsState state;
  state.scenario = &scenario;
  state.book = &book;
  const auto text = metricsText(state);
  const std::string labels = "step=\"home\",method=\"GET\"";
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"0.0005\"} 1\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"0.001\"} 2\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"0.0025\"} 2\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"0.005\"} 4\n"));
  // Over 60 s: only in +Inf.
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"60\"} 4\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"+Inf\"} 5\n"));
  CHECK_THAT(text, Catch::Contains("stampede_latency_seconds_count{" + labels + "} 5\n"));
  CHECK_THAT(text, Catch::Contains("stampede_latency_seconds_sum{" + labels + "} 70.0073\n"));
  CHECK_THAT(text, Catch::Contains("stampede_requests_total{" + labels + "} 5\n"));
  // Label values escape quotes.
  CHECK_THAT(text, Catch::Contains("name=\"say \\\"hi\\\"\""));
  CHECK_THAT(text, Catch::Contains("stampede_run_finished 0\n"));
}

TEST_CASE("the service-time histogram is the open model's service time, by step, on the latency "
          "buckets",
          "[metrics]") {
  auto scenario = oneStep();
  scenario.load.model = stampede::common::LoadSpec::Model::Open;
  stampede::common::StatsBook book(1);
  // From the schedule: late by 10 ms; from the send: 400 us, 900 us and 3 ms.
  for (int64_t us : {10'400, 10'900, 13'000})
    book.steps[0].latency_us.record(us);
  for (int64_t us : {400, 900, 3'000})
    book.steps[0].service_us.record(us);
  MetricsState state;
  state.scenario = &scenario;
  state.book = &book;
  const auto text = metricsText(state);
  const std::string labels = "step=\"home\",method=\"GET\"";
  CHECK_THAT(text, Catch::Contains("# TYPE stampede_service_seconds histogram\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_service_seconds_bucket{" + labels + ",le=\"0.0005\"} 1\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_service_seconds_bucket{" + labels + ",le=\"0.001\"} 2\n"));
  CHECK_THAT(text,
             Catch::Contains("stampede_service_seconds_bucket{" + labels + ",le=\"0.005\"} 3\n"));
  CHECK_THAT(text, Catch::Contains("stampede_service_seconds_count{" + labels + "} 3\n"));
  CHECK_THAT(text, Catch::Contains("stampede_service_seconds_sum{" + labels + "} 0.0043\n"));
  // The latency, from the schedule, is all over 10 ms.
  CHECK_THAT(text,
             Catch::Contains("stampede_latency_seconds_bucket{" + labels + ",le=\"0.005\"} 0\n"));

  SECTION("closed model: the service time is the latency, as report.json's service_ms") {
    scenario.load.model = stampede::common::LoadSpec::Model::Closed;
    const auto closed = metricsText(state);
    CHECK_THAT(closed,
               Catch::Contains("stampede_service_seconds_bucket{" + labels + ",le=\"0.005\"} 0\n"));
    CHECK_THAT(closed, Catch::Contains("stampede_service_seconds_sum{" + labels + "} 0.0343\n"));
  }
}
