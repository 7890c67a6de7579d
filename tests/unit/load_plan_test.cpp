#include "common/load_plan.h"
#include "master/env_file.h"
#include "master/plan.h"

#include "common/config_error.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <set>

using namespace stampede;
using common::LoadCurve;
using common::Stage;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

Stage ramp(double to, microseconds over) {
  return Stage{false, to, over};
}
Stage hold(microseconds over) {
  return Stage{true, 0, over};
}

} // namespace

TEST_CASE("a constant rate puts arrival k at k / rate", "[load_plan]") {
  const LoadCurve curve({ramp(200, microseconds(0)), hold(seconds(10))});
  CHECK(curve.total() == seconds(10));
  CHECK(curve.levelAt(microseconds(-1)) == 0);
  CHECK(curve.levelAt(seconds(5)) == 200);
  CHECK(curve.levelAt(seconds(10)) == 0);
  for (int k : {0, 1, 7, 1999}) {
    auto at = curve.timeOfArrival(k);
    REQUIRE(at);
    CHECK(at->count() == Approx(k * 5000.0).margin(1));
  }
  CHECK_FALSE(curve.timeOfArrival(2000)); // the 2001st would be at 10 s: after the end
  CHECK(curve.arrivalsBy(seconds(10)) == Approx(2000));
}

TEST_CASE("a ramping rate interpolates linearly and its arrivals follow the integral",
          "[load_plan]") {
  // 0 -> 100/s over 10 s: 500 arrivals in the ramp, the k-th at sqrt(k / 5) s.
  const LoadCurve curve({ramp(100, seconds(10)), hold(seconds(1))});
  CHECK(curve.levelAt(seconds(5)) == Approx(50));
  CHECK(curve.arrivalsBy(seconds(10)) == Approx(500));
  CHECK(curve.arrivalsBy(seconds(11)) == Approx(600));
  for (int k : {1, 20, 125, 499}) {
    auto at = curve.timeOfArrival(k);
    REQUIRE(at);
    CHECK(double(at->count()) / 1e6 == Approx(std::sqrt(k / 5.0)).epsilon(1e-6));
  }
  // Arrival times are increasing and each matches the integral.
  double last = -1;
  for (int k = 0; k < 600; ++k) {
    auto at = curve.timeOfArrival(k);
    REQUIRE(at);
    CHECK(double(at->count()) > last);
    last = double(at->count());
    CHECK(curve.arrivalsBy(*at) == Approx(k).margin(0.01));
  }
}

TEST_CASE("a worker's share scales the rate and its phase interleaves workers", "[load_plan]") {
  const LoadCurve whole({ramp(400, microseconds(0)), hold(seconds(5))});
  const LoadCurve half({ramp(400, microseconds(0)), hold(seconds(5))}, 0.5);
  // Worker 0 takes arrivals k + 0/2, worker 1 k + 1/2 of its own schedule: together every
  // arrival of the whole schedule, once.
  std::vector<int64_t> merged;
  for (int w = 0; w < 2; ++w)
    for (int k = 0;; ++k) {
      auto at = half.timeOfArrival(k + w / 2.0);
      if (!at)
        break;
      merged.push_back(at->count());
    }
  std::sort(merged.begin(), merged.end());
  REQUIRE(merged.size() == 2000);
  for (size_t k = 0; k < merged.size(); ++k)
    CHECK(merged[k] == whole.timeOfArrival(double(k))->count());
}

TEST_CASE("closed-model users start as the curve rises and park as it falls", "[load_plan]") {
  const LoadCurve curve({ramp(10, seconds(10)), hold(seconds(5)), ramp(0, seconds(5))});
  // User 3 runs once the level is above 3: just after 3 s.
  auto start = curve.nextTimeAbove(3, microseconds(0));
  REQUIRE(start);
  CHECK(start->count() == Approx(3e6).margin(2));
  CHECK(curve.levelAt(*start) > 3);
  // During the ramp-down the level crosses 3 again at 18.5 s; after that, never again.
  CHECK(curve.levelAt(milliseconds(18400)) > 3);
  CHECK(curve.levelAt(milliseconds(18600)) < 3);
  CHECK_FALSE(curve.nextTimeAbove(3, milliseconds(18600)));
  // A user already wanted is wanted now.
  CHECK(curve.nextTimeAbove(3, seconds(12)) == seconds(12));
  // No ramp: every user at once.
  const LoadCurve flat({ramp(4, microseconds(0)), hold(seconds(1))});
  CHECK(flat.nextTimeAbove(3, microseconds(0)) == microseconds(0));
  CHECK_FALSE(flat.nextTimeAbove(4, microseconds(0)));
}

TEST_CASE("cluster users interleave across workers in proportion to their counts", "[load_plan]") {
  const std::vector<uint32_t> equal{3, 3, 3};
  CHECK(common::clusterUsersOf(0, equal) == std::vector<uint64_t>{0, 3, 6});
  CHECK(common::clusterUsersOf(2, equal) == std::vector<uint64_t>{2, 5, 8});
  const std::vector<uint32_t> weighted{2, 1, 5};
  std::set<uint64_t> all;
  for (uint32_t w = 0; w < weighted.size(); ++w) {
    auto mine = common::clusterUsersOf(w, weighted);
    CHECK(mine.size() == weighted[w]);
    all.insert(mine.begin(), mine.end());
  }
  CHECK(all.size() == 8);
  CHECK(*all.rbegin() == 7);
}

TEST_CASE("--duration replaces the hold, or ends written stages where they are", "[load_plan]") {
  common::LoadSpec simple;
  simple.users = 5;
  simple.ramp = seconds(2);
  simple.duration = seconds(60);
  simple.stages = {ramp(5, seconds(2)), hold(seconds(60))};
  common::applyDuration(simple, seconds(3));
  CHECK(simple.total() == seconds(5));
  CHECK(simple.duration == seconds(3));

  common::LoadSpec staged;
  staged.stages_written = true;
  staged.stages = {ramp(100, seconds(10)), hold(seconds(10))};
  common::applyDuration(staged, seconds(5));
  REQUIRE(staged.stages.size() == 1);
  CHECK(staged.total() == seconds(5));
  CHECK(staged.stages[0].to == Approx(50));
  common::applyDuration(staged, seconds(8)); // longer: the last level is held
  CHECK(staged.total() == seconds(8));
  CHECK(LoadCurve(staged.stages).levelAt(seconds(7)) == Approx(50));
}

TEST_CASE("the plan splits rate, in-flight cap, iterations and per_worker rows", "[load_plan]") {
  common::Scenario s;
  s.file = "plan.yaml";
  s.load.model = common::LoadSpec::Model::Open;
  s.load.rate = 300;
  s.load.max_in_flight = 10;
  s.load.iterations = 101;
  common::Feeder rows;
  rows.name = "accounts";
  rows.file = "accounts.csv";
  rows.columns = {"user"};
  for (int i = 0; i < 10; ++i)
    rows.rows.push_back({"u" + std::to_string(i)});
  s.data.push_back(rows);
  s.files["accounts.csv"] = "user\n";
  const std::vector<double> capacity{1, 1, 2};
  const auto plans = master::planWorkers(s, capacity);
  REQUIRE(plans.size() == 3);
  CHECK(plans[0].rate_share == Approx(0.25));
  CHECK(plans[2].rate_share == Approx(0.5));
  CHECK(plans[0].max_in_flight + plans[1].max_in_flight + plans[2].max_in_flight == 10);
  CHECK(plans[1].first_vu == plans[0].max_in_flight);
  CHECK(plans[0].iterations + plans[1].iterations + plans[2].iterations == 101);
  // Rows: disjoint slices that cover the file, shipped as CSV text.
  CHECK(plans[0].feeder_rows[0] + plans[1].feeder_rows[0] + plans[2].feeder_rows[0] == 10);
  CHECK(plans[2].feeder_rows[0] == 5);
  CHECK(plans[0].files.at("accounts.csv") == "user\r\nu0\r\nu1\r\nu2\r\n"); // 2.5 rounds up first
  CHECK(plans[2].files.at("accounts.csv") == "user\r\nu5\r\nu6\r\nu7\r\nu8\r\nu9\r\n");

  // Fewer rows than loaded workers cannot be split.
  s.data[0].rows.resize(2);
  CHECK_THROWS_AS(master::planWorkers(s, capacity), common::ConfigError);
  s.data[0].split = common::Feeder::Split::Shared;
  CHECK(master::planWorkers(s, capacity)[1].feeder_rows[0] == 2);
}

TEST_CASE("env files: comments, export, quotes; a bad line names its line", "[env_file]") {
  const auto values =
      master::parseEnvText("# comment\n\nexport A=1\nB = 'two words'\nC=\"x=y\"\nD=\n", "t.env");
  CHECK(values.at("A") == "1");
  CHECK(values.at("B") == "two words");
  CHECK(values.at("C") == "x=y");
  CHECK(values.at("D").empty());
  try {
    master::parseEnvText("A=1\nnot a pair\n", "t.env");
    FAIL("no error");
  } catch (const common::ConfigError& e) {
    CHECK(e.line() == 2);
    CHECK(std::string(e.what()).find("t.env:2") != std::string::npos);
  }
  CHECK_THROWS_AS(master::parseEnvText("1A=x\n", "t.env"), common::ConfigError);
  CHECK_THROWS_AS(master::parseEnvText("A='open\n", "t.env"), common::ConfigError);
}

TEST_CASE("closed-model iterations go to the workers that have users", "[load_plan]") {
  common::Scenario s;
  s.load.model = common::LoadSpec::Model::Closed;
  s.load.users = 2;
  s.load.iterations = 90;
  const std::vector<double> capacity{1, 1, 1};
  const auto plans = master::planWorkers(s, capacity);
  REQUIRE(plans.size() == 3);
  CHECK(plans[0].users + plans[1].users + plans[2].users == 2);
  uint64_t runnable = 0;
  for (const auto& plan : plans) {
    if (plan.users > 0)
      runnable += plan.iterations;
    else
      CHECK(plan.iterations == 0);
  }
  CHECK(runnable == 90); // every iteration lands on a worker that can run it
}

TEST_CASE("per-flow load: each group is split on its own, with its own {{vu}} block",
          "[load_plan]") {
  const common::Scenario s = common::loadScenarioText(R"(name: t
target: http://127.0.0.1:8080
flows:
  - name: sub
    load: {users: 5, duration: 1s}
    steps: [{get: /}]
  - name: pub
    load: {rate: 100/s, duration: 2s, max_in_flight: 7, iterations: 9}
    steps: [{get: /}]
)",
                                                      "g.yaml");
  REQUIRE(s.groups.size() == 2);
  CHECK(s.groups[0].path == "flows[0].load");
  CHECK(s.groups[1].first_vu == 5); // after the 5 users of the first
  CHECK(s.length() == seconds(2));
  const std::vector<double> capacity{1, 1};
  const auto plans = master::planWorkers(s, capacity);
  REQUIRE(plans.size() == 2);
  CHECK(plans[0].users + plans[1].users == 5);
  REQUIRE(plans[0].other_groups.size() == 1);
  const auto& a = plans[0].other_groups[0];
  const auto& b = plans[1].other_groups[0];
  CHECK(a.rate_share == Approx(0.5));
  CHECK(a.max_in_flight + b.max_in_flight == 7);
  CHECK(a.first_vu == 5);
  CHECK(b.first_vu == 5 + a.max_in_flight);
  CHECK(a.iterations + b.iterations == 9);
  CHECK(master::clusterUsers(plans, 1) == std::vector<uint32_t>{0, 0});
}
