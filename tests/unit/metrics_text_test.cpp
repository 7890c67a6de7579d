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
