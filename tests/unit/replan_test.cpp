#include "master/replan.h"

#include "common/load_plan.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <set>

using namespace stampede;

namespace {

common::Scenario closedScenario(int users) {
  common::Scenario s;
  s.file = "replan.yaml";
  s.load.model = common::LoadSpec::Model::Closed;
  s.load.users = users;
  return s;
}

} // namespace

TEST_CASE("a newcomer takes the highest users of each place, every user run once", "[replan]") {
  const auto s = closedScenario(10);
  const std::vector<double> before{1, 1};
  const auto plans = master::planWorkers(s, before);
  const auto cluster_users = master::clusterUsers(plans);
  const std::vector<double> after{1, 1, 1};
  const auto r = master::replanForNewcomer(s, plans, cluster_users, after, 0);
  REQUIRE(r.plans.size() == 3);
  REQUIRE(r.retire.size() == 2);
  // 5 and 5 become 4, 3 and 3 (or the like): the total stays 10.
  CHECK(r.plans[0].users + r.plans[1].users + r.plans[2].users == 10);
  CHECK(r.cluster_users ==
        std::vector<uint32_t>{r.plans[0].users, r.plans[1].users, r.plans[2].users});
  // Place 0 ran 0, 2, 4, 6, 8: it keeps the lowest and hands over the rest.
  const auto place0 = common::clusterUsersOf(0, cluster_users);
  CHECK(place0 == std::vector<uint64_t>{0, 2, 4, 6, 8});
  CHECK(r.retire[0] == std::vector<uint64_t>(place0.begin() + r.plans[0].users, place0.end()));
  CHECK(r.retire[0].size() == 5 - r.plans[0].users);
  std::multiset<uint64_t> all;
  for (uint32_t i = 0; i < 3; ++i)
    for (uint64_t vu : master::usersOf(r.plans[i], i, r.cluster_users))
      all.insert(vu);
  CHECK(all == std::multiset<uint64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  // What was handed over is exactly what the newcomer runs.
  std::vector<uint64_t> handed = r.retire[0];
  handed.insert(handed.end(), r.retire[1].begin(), r.retire[1].end());
  std::sort(handed.begin(), handed.end());
  CHECK(*r.plans[2].own_users == handed);

  // A second newcomer re-plans from the first re-plan's lists.
  const std::vector<double> four{1, 1, 1, 1};
  const auto again = master::replanForNewcomer(s, r.plans, r.cluster_users, four, 0);
  std::multiset<uint64_t> all4;
  for (uint32_t i = 0; i < 4; ++i)
    for (uint64_t vu : master::usersOf(again.plans[i], i, again.cluster_users))
      all4.insert(vu);
  CHECK(all4 == all);
}

TEST_CASE("an open-model newcomer splits the rate and the in-flight cap anew", "[replan]") {
  common::Scenario s;
  s.file = "replan.yaml";
  s.load.model = common::LoadSpec::Model::Open;
  s.load.rate = 240;
  s.load.max_in_flight = 60;
  const std::vector<double> before{1, 1};
  const auto plans = master::planWorkers(s, before);
  const std::vector<double> after{1, 1, 2};
  const auto r = master::replanForNewcomer(s, plans, master::clusterUsers(plans), after, 60);
  REQUIRE(r.plans.size() == 3);
  CHECK(r.plans[0].rate_share == Approx(0.25));
  CHECK(r.plans[2].rate_share == Approx(0.5));
  CHECK(r.plans[0].max_in_flight + r.plans[1].max_in_flight + r.plans[2].max_in_flight == 60);
  // The places keep their {{vu}} blocks; the newcomer's lies above every block given out.
  CHECK(r.plans[1].first_vu == plans[1].first_vu);
  CHECK(r.plans[2].first_vu == 60);
  CHECK(r.next_first_vu == 60 + r.plans[2].max_in_flight);
}

TEST_CASE("shares that cannot be re-planned mid-run say why", "[replan]") {
  auto s = closedScenario(4);
  CHECK(master::whyNoReplan(s).empty());
  common::Feeder f;
  f.name = "ids";
  s.data.push_back(f);
  CHECK(master::whyNoReplan(s).empty()); // per_worker in sequence: rows are handed over
  s.data[0].order = common::Feeder::Order::Shuffle;
  CHECK(master::whyNoReplan(s).find("data.ids is split: per_worker and drawn out of order") !=
        std::string::npos);
  s.data[0].split = common::Feeder::Split::Shared;
  CHECK(master::whyNoReplan(s).empty());
  s.load.iterations = 100;
  CHECK(master::whyNoReplan(s).find("load.iterations") != std::string::npos);
}

TEST_CASE("a place taken over continues its feeders past what the lost worker may have drawn",
          "[replan]") {
  // Position 300 at its last Stats, 40 drawn in that second: it may have drawn up to about
  // 40 more before it died; half again covers a slower last second.
  CHECK(master::feederStart(std::vector<uint64_t>{300, 0}, std::vector<uint64_t>{40, 0}) ==
        std::vector<uint64_t>{360, 0});
  CHECK(master::feederStart(std::vector<uint64_t>{}, std::vector<uint64_t>{}).empty());
}

TEST_CASE("a newcomer gets a share of the per_worker rows no place has reached, none twice",
          "[replan]") {
  auto s = closedScenario(4);
  common::Feeder f;
  f.name = "ids";
  f.file = "ids.csv";
  f.columns = {"id"};
  for (int i = 0; i < 20; ++i)
    f.rows.push_back({"r" + std::to_string(i)});
  s.data.push_back(f);
  const std::vector<double> before{1, 1};
  const auto plans = master::planWorkers(s, before); // rows 0-9 and 10-19
  const std::vector<double> after{1, 1, 2};
  // Place 0 may have drawn 4 rows, place 1 all but 2.
  const std::vector<std::vector<uint64_t>> reached{{4}, {8}};
  const auto r =
      master::replanForNewcomer(s, plans, master::clusterUsers(plans), after, 0, reached);
  REQUIRE(r.refused.empty());
  // Half the capacity is the newcomer's: half of each place's rows left, from the end.
  CHECK(r.plans[0].feeder_ids[0] == std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6});
  CHECK(r.plans[1].feeder_ids[0] == std::vector<uint32_t>{10, 11, 12, 13, 14, 15, 16, 17, 18});
  CHECK(r.plans[2].feeder_ids[0] == std::vector<uint32_t>{7, 8, 9, 19});
  CHECK(r.keep_rows == std::vector<std::vector<uint64_t>>{{7}, {9}});
  CHECK(r.plans[2].files.at("ids.csv") == "id\r\nr7\r\nr8\r\nr9\r\nr19\r\n");
  CHECK(r.plans[0].files.at("ids.csv") == "id\r\nr0\r\nr1\r\nr2\r\nr3\r\nr4\r\nr5\r\nr6\r\n");
  // Nothing left anywhere: refused, with the feeder named.
  const std::vector<std::vector<uint64_t>> all{{10}, {10}};
  const auto none = master::replanForNewcomer(s, plans, master::clusterUsers(plans), after, 0, all);
  CHECK(none.refused.find("data.ids") != std::string::npos);
}
