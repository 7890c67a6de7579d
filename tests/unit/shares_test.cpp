#include "master/shares.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>
#include <vector>

using stampede::master::splitUsers;
using stampede::master::WorkerShare;

namespace {

std::vector<uint32_t> usersOf(const std::vector<WorkerShare>& shares) {
  std::vector<uint32_t> out;
  for (const auto& s : shares)
    out.push_back(s.users);
  return out;
}

std::vector<uint32_t> split(uint32_t users, std::vector<double> capacity) {
  return usersOf(splitUsers(users, capacity));
}

} // namespace

TEST_CASE("weights 1, 1, 2 split 100 users 25, 25, 50", "[shares]") {
  const std::vector<double> capacity = {1, 1, 2};
  const auto shares = splitUsers(100, capacity);
  REQUIRE(usersOf(shares) == std::vector<uint32_t>{25, 25, 50});
}

TEST_CASE("leftover users go to the largest remainders, the lower index on a tie", "[shares]") {
  // Quotas 1.67, 3.33, 5: floors give 9, the one left goes to the .67.
  REQUIRE(split(10, {1, 2, 3}) == std::vector<uint32_t>{2, 3, 5});
  // Equal remainders: lower indexes first.
  REQUIRE(split(10, {1, 1, 1}) == std::vector<uint32_t>{4, 3, 3});
  REQUIRE(split(7, {1, 1, 1, 1}) == std::vector<uint32_t>{2, 2, 2, 1});
  // 0.1 * 3 cores and 0.3 * 1 core are one capacity to the user, not two in floating point.
  REQUIRE(split(3, {0.3, 0.1 * 3}) == std::vector<uint32_t>{2, 1});
  REQUIRE(split(3, {0.1 * 3, 0.3}) == std::vector<uint32_t>{2, 1});
}

TEST_CASE("the split is the same every time", "[shares]") {
  const std::vector<double> capacity = {1.5 * 8, 1.0 * 4, 2.0 * 2, 0.7 * 16};
  const auto first = splitUsers(997, capacity);
  for (int i = 0; i < 10; ++i) {
    const auto again = splitUsers(997, capacity);
    REQUIRE(usersOf(again) == usersOf(first));
  }
}

TEST_CASE("fewer users than workers leaves some workers with none", "[shares]") {
  REQUIRE(split(2, {1, 1, 1, 1, 1}) == std::vector<uint32_t>{1, 1, 0, 0, 0});
  REQUIRE(split(0, {1, 2}) == std::vector<uint32_t>{0, 0});
  REQUIRE(split(1, {1, 3}) == std::vector<uint32_t>{0, 1});
}

TEST_CASE("a worker of capacity 0 gets no users", "[shares]") {
  REQUIRE(split(5, {0, 1, 0}) == std::vector<uint32_t>{0, 5, 0});
  REQUIRE(split(3, {1, 0, 1, 0}) == std::vector<uint32_t>{2, 0, 1, 0});
}

TEST_CASE("capacities that cannot be split on are refused", "[shares]") {
  REQUIRE_THROWS_AS(split(10, {1, -1}), std::invalid_argument);
  REQUIRE_THROWS_AS(split(10, {1, std::nan("")}), std::invalid_argument);
  REQUIRE_THROWS_AS(split(10, {1, std::numeric_limits<double>::infinity()}), std::invalid_argument);
  REQUIRE_THROWS_AS(split(10, {0, 0}), std::invalid_argument);
  REQUIRE_THROWS_AS(split(10, {}), std::invalid_argument);
  REQUIRE(split(0, {}).empty());
}

TEST_CASE("shares always sum to the users and stay within one of the exact quota", "[shares]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int> worker_count(1, 60);
  std::uniform_real_distribution<double> weight(0.01, 100.0);
  std::uniform_int_distribution<int> cores(1, 64);
  std::bernoulli_distribution idle(0.1);
  for (int round = 0; round < 2'000; ++round) {
    std::vector<double> capacity(size_t(worker_count(rng)));
    for (double& c : capacity)
      c = idle(rng) ? 0.0 : weight(rng) * cores(rng);
    capacity[0] = std::max(capacity[0], 1.0); // at least one worker can take users
    uint32_t users = 0;
    switch (round % 4) {
    case 0:
      users = std::uniform_int_distribution<uint32_t>(0, 10)(rng);
      break;
    case 1:
      users = std::uniform_int_distribution<uint32_t>(0, 1'000)(rng);
      break;
    case 2:
      users = std::uniform_int_distribution<uint32_t>(0, 10'000'000)(rng);
      break;
    default:
      users = std::numeric_limits<uint32_t>::max() - uint32_t(round);
      break;
    }
    const auto shares = splitUsers(users, capacity);
    REQUIRE(shares.size() == capacity.size());
    const double total = std::accumulate(capacity.begin(), capacity.end(), 0.0);
    uint64_t sum = 0;
    for (size_t i = 0; i < shares.size(); ++i) {
      sum += shares[i].users;
      const double quota = double(users) * capacity[i] / total;
      // Largest remainder never moves a share a whole user from its quota (with slack for
      // the quota's own rounding at four billion users).
      REQUIRE(std::fabs(double(shares[i].users) - quota) < 1.0 + quota * 1e-8);
      if (capacity[i] == 0)
        REQUIRE(shares[i].users == 0);
    }
    REQUIRE(sum == users);
  }
}
