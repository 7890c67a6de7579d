// worker --allow-target: parsing, the connect-time check (allows) and the Prepare check.
#include "worker/target_policy.h"

#include <catch2/catch.hpp>

namespace stampede::worker {
namespace {

using boost::asio::ip::make_address;

common::Scenario scenarioWith(const std::string& target, const std::string& step_url) {
  const std::string yaml = "name: t\ntarget: " + target +
                           "\nload: {users: 1, duration: 1s}\n"
                           "flows:\n  - name: f\n    steps:\n      - get: " +
                           step_url + "\n";
  return common::loadScenarioText(yaml, "t.yaml");
}

TEST_CASE("allows() judges an address by the networks, IPv4-mapped IPv6 as IPv4",
          "[target_policy]") {
  auto policy = TargetPolicy::parse("127.0.0.1/32, 10.20.0.0/16,::1/128");
  CHECK(policy.allows(make_address("127.0.0.1")));
  CHECK_FALSE(policy.allows(make_address("127.0.0.2")));
  CHECK(policy.allows(make_address("10.20.255.1")));
  CHECK_FALSE(policy.allows(make_address("10.21.0.1")));
  CHECK(policy.allows(make_address("::1")));
  CHECK(policy.allows(make_address("::ffff:10.20.1.2")));
  CHECK_FALSE(policy.allows(make_address("::ffff:127.0.0.2")));
  CHECK(policy.refusal(make_address("127.0.0.2")) ==
        "127.0.0.2 is outside --allow-target 127.0.0.1/32, 10.20.0.0/16,::1/128");
}

TEST_CASE("resolved() turns names into their addresses; allows() alone never resolves",
          "[target_policy]") {
  auto policy = TargetPolicy::parse("localhost");
  CHECK_FALSE(policy.allows(make_address("127.0.0.1"))); // a name counts once resolved
  auto resolved = policy.resolved();
  CHECK(resolved.allows(make_address("127.0.0.1")));
  CHECK_FALSE(resolved.allows(make_address("127.0.0.2")));
  CHECK(resolved.text() == "localhost");
}

TEST_CASE("Prepare refuses a static target or constant URL outside, not a templated host",
          "[target_policy]") {
  auto policy = TargetPolicy::parse("127.0.0.1/32");
  CHECK(policy.check(scenarioWith("http://127.0.0.1:8080", "/")) == "");
  auto why = policy.check(scenarioWith("http://127.0.0.2:8080", "/"));
  CHECK(why.find("127.0.0.2") != std::string::npos);
  CHECK(why.find("--allow-target 127.0.0.1/32") != std::string::npos);
  why = policy.check(scenarioWith("http://127.0.0.1:8080", "http://127.0.0.3:9/x"));
  CHECK(why.find("127.0.0.3") != std::string::npos);
  // A host that varies per request is checked on each connection instead.
  CHECK(policy.check(scenarioWith("http://127.0.0.1:8080",
                                  "http://127.0.0.{{random_int(2, 3)}}:9/x")) == "");
}

} // namespace
} // namespace stampede::worker
