// The loader's messaging room: `messaging:`, publish and subscribe steps, users: on flows.
#include "common/config_error.h"
#include "common/scenario.h"

#include <catch2/catch.hpp>

using namespace stampede::common;
using namespace std::chrono_literals;

TEST_CASE("a messaging scenario loads into the model", "[scenario][messaging]") {
  const std::string yaml = R"(
name: m
target: http://127.0.0.1:8080
load: {users: 5, duration: 10s}
messaging:
  urls: "tcp://a:61613, tcp://[::1]:61614"
  reconnect: {delay: 200ms, multiplier: 2, max_delay: 2s, attempts: 5, budget: 9s}
  client_id: "orders-{{vu}}"
  user: bob
flows:
  - name: sub
    users: 3
    steps:
      - subscribe: {from: topic://orders, durable: "s-{{vu}}", ack: client, prefetch: 7,
                    receive: 4, timeout: 2s, expect: {body_contains: x, max_latency: 50ms},
                    on_end: unsubscribe}
  - name: pub
    users: 2
    steps:
      - name: send order
        publish: {to: queue://q, body: "n {{iteration}}", properties: {region: eu},
                  persistent: false, confirm: false, timeout: 1s}
)";
  const Scenario s = loadScenarioText(yaml, "m.yaml");
  REQUIRE(s.messaging);
  const auto& m = *s.messaging;
  REQUIRE(m.urls.size() == 2);
  CHECK(m.urls[0].host == "a");
  CHECK(m.urls[0].port == 61613);
  CHECK(m.urls[1].host == "::1");
  CHECK(m.urls[1].port == 61614);
  CHECK(m.reconnect.delay == 200ms);
  CHECK(m.reconnect.multiplier == 2.0);
  CHECK(m.reconnect.max_delay == 2s);
  CHECK(m.reconnect.attempts == 5);
  CHECK(m.reconnect.budget == 9s);
  CHECK(m.client_id.source() == "orders-{{vu}}");
  REQUIRE(m.user);
  CHECK_FALSE(m.password);

  REQUIRE(s.flows.size() == 2);
  CHECK(s.flows[0].users == 3);
  CHECK(s.flows[0].first_user == 0);
  CHECK(s.flows[1].users == 2);
  CHECK(s.flows[1].first_user == 3);

  const Step& sub = s.flows[0].steps[0];
  REQUIRE(sub.kind == Step::Kind::Subscribe);
  REQUIRE(sub.subscribe);
  CHECK(sub.subscribe->from.topic);
  CHECK(sub.subscribe->from.name == "orders");
  CHECK(sub.subscribe->ack == SubscribeSpec::Ack::Client);
  CHECK(sub.subscribe->prefetch == 7);
  CHECK(sub.subscribe->receive == 4);
  CHECK(sub.subscribe->timeout == 2s);
  CHECK(sub.subscribe->expect_body == "x");
  CHECK(sub.subscribe->max_latency == 50ms);
  CHECK(sub.subscribe->on_end == SubscribeSpec::OnEnd::Unsubscribe);
  CHECK(s.step_table[sub.stats_index].name == "SUBSCRIBE topic://orders");
  CHECK(s.step_table[sub.stats_index].method == "SUBSCRIBE");

  const Step& pub = s.flows[1].steps[0];
  REQUIRE(pub.kind == Step::Kind::Publish);
  CHECK_FALSE(pub.publish->to.topic);
  CHECK(pub.publish->to.text() == "queue://q");
  CHECK(pub.publish->body.source() == "n {{iteration}}");
  REQUIRE(pub.publish->properties.size() == 1);
  CHECK(pub.publish->properties[0].first == "region");
  CHECK_FALSE(pub.publish->persistent);
  CHECK_FALSE(pub.publish->confirm);
  CHECK(pub.publish->timeout == 1s);
  CHECK(s.step_table[pub.stats_index].name == "send order");
  CHECK(s.flows[1].first_request_stats_index == pub.stats_index);
}

TEST_CASE("messaging defaults", "[scenario][messaging]") {
  const Scenario s = loadScenarioText(R"(
name: m
target: http://127.0.0.1:8080
load: {users: 1, duration: 1s}
messaging: {urls: [tcp://127.0.0.1:61613]}
flows:
  - steps: [{publish: {to: topic://t}}, {subscribe: {from: queue://q}}]
)",
                                      "d.yaml");
  const auto& m = *s.messaging;
  CHECK(m.reconnect.delay == 500ms);
  CHECK(m.reconnect.multiplier == 1.0);
  CHECK(m.reconnect.budget == 30s);
  CHECK(m.client_id.source().empty());
  const auto& pub = *s.flows[0].steps[0].publish;
  CHECK(pub.persistent);
  CHECK(pub.confirm);
  CHECK(pub.timeout == 5s);
  const auto& sub = *s.flows[0].steps[1].subscribe;
  CHECK(sub.ack == SubscribeSpec::Ack::Auto);
  CHECK(sub.receive == 1);
  CHECK(sub.on_end == SubscribeSpec::OnEnd::Keep);
  CHECK_FALSE(sub.durable);
  CHECK(s.flows[0].users == 0);
}

TEST_CASE("messaging heartbeat: one interval both ways, or send, receive and tolerance",
          "[scenario][messaging]") {
  auto load = [](const std::string& messaging) {
    return loadScenarioText(R"(
name: m
target: http://127.0.0.1:8080
load: {users: 1, duration: 1s}
messaging: )" + messaging + R"(
flows:
  - steps: [{publish: {to: topic://t}}]
)",
                            "h.yaml")
        .messaging->heartbeat;
  };
  const HeartbeatSpec none = load("{urls: [tcp://127.0.0.1:61613]}");
  CHECK(none.send == 0s);
  CHECK(none.receive == 0s);
  const HeartbeatSpec both = load("{urls: [tcp://127.0.0.1:61613], heartbeat: 2s}");
  CHECK(both.send == 2s);
  CHECK(both.receive == 2s);
  CHECK(both.tolerance == 2.0);
  const HeartbeatSpec each =
      load("{urls: [tcp://127.0.0.1:61613], heartbeat: {send: 500ms, receive: 0s, tolerance: 3}}");
  CHECK(each.send == 500ms);
  CHECK(each.receive == 0s);
  CHECK(each.tolerance == 3.0);
}

TEST_CASE("messaging ssl:// and stomp+ssl:// URLs take messaging.tls", "[scenario][messaging]") {
  const Scenario s = loadScenarioText(R"(
name: m
target: http://127.0.0.1:8080
load: {users: 1, duration: 1s}
messaging:
  urls: [ssl://a:61614, stomp+ssl://b:61615, stomp://c:61613, tcp://d:61613]
  tls: {verify: false}
flows:
  - steps: [{publish: {to: topic://t}}]
)",
                                      "t.yaml");
  const auto& m = *s.messaging;
  REQUIRE(m.urls.size() == 4);
  CHECK(m.urls[0].tls);
  CHECK(m.urls[0].host == "a");
  CHECK(m.urls[1].tls);
  CHECK(m.urls[1].port == 61615);
  CHECK_FALSE(m.urls[2].tls);
  CHECK_FALSE(m.urls[3].tls);
  CHECK_FALSE(m.tls.verify);
}
