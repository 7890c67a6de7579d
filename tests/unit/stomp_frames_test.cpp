// The STOMP driver's frames as pure functions: what CONNECT, SUBSCRIBE and SEND carry, and how
// a broker's answer to CONNECT becomes an error kind (by what Debian's ActiveMQ 5.17 says).
#include "worker/stomp_frames.h"

#include <catch2/catch.hpp>

using namespace stampede;
using namespace stampede::worker;

namespace {

StompFrame errorFrame(std::string message, std::string body = {}) {
  StompFrame f;
  f.command = "ERROR";
  f.headers = {{"message", std::move(message)}};
  f.body = std::move(body);
  return f;
}

common::BrokerUrl url() {
  common::BrokerUrl u;
  u.host = "127.0.0.1";
  u.port = 61613;
  u.text = "tcp://127.0.0.1:61613";
  return u;
}

} // namespace

TEST_CASE("the broker's answer to CONNECT is classified by what it says", "[stomp]") {
  StompFrame connected;
  connected.command = "CONNECTED";
  CHECK(classifyConnectAnswer(connected, url(), "c-1").ok());

  const auto in_use = classifyConnectAnswer(
      errorFrame("javax.jms.InvalidClientIDException: Broker: localhost - Client: c-1 already "
                 "connected from tcp://127.0.0.1:40000"),
      url(), "c-1");
  CHECK(in_use.error == MsgError::ClientIdInUse);
  CHECK_THAT(in_use.detail, Catch::Contains("client id 'c-1' is in use at tcp://127.0.0.1:61613"));

  const auto refused =
      classifyConnectAnswer(errorFrame("User name [bob] or password is invalid."), url(), "");
  CHECK(refused.error == MsgError::Unauthorized);
  CHECK(refused.detail == "tcp://127.0.0.1:61613: User name [bob] or password is invalid.");

  const auto other = classifyConnectAnswer(errorFrame("", "line one\nline two"), url(), "");
  CHECK(other.error == MsgError::Protocol);
  CHECK(other.detail == "tcp://127.0.0.1:61613: line one");

  StompFrame odd;
  odd.command = "MESSAGE";
  CHECK(classifyConnectAnswer(odd, url(), "").detail ==
        "tcp://127.0.0.1:61613: expected CONNECTED, got MESSAGE");
}

TEST_CASE("an ERROR frame is said on one line, cut at 300 bytes", "[stomp]") {
  CHECK(describeStompError(errorFrame("")) == "the broker sent an ERROR frame");
  CHECK(describeStompError(errorFrame("denied", std::string(500, 'x') + "\nmore")) ==
        "denied: " + std::string(300, 'x'));
}

TEST_CASE("CONNECT, SUBSCRIBE and SEND carry what the session asks", "[stomp]") {
  ConnectionSettings settings;
  settings.heartbeat.send = std::chrono::milliseconds(4000);
  settings.heartbeat.receive = std::chrono::milliseconds(250);
  settings.client_id = "orders-7";
  settings.has_login = true;
  settings.user = "u";
  settings.password = "p";
  StompFrame connect;
  connect.body = "left over";
  stompConnectFrame(settings, url(), connect);
  CHECK(connect.command == "CONNECT");
  CHECK(connect.header("accept-version") == "1.2");
  CHECK(connect.header("host") == "127.0.0.1");
  CHECK(connect.header("heart-beat") == "4000,250");
  CHECK(connect.header("client-id") == "orders-7");
  CHECK(connect.header("login") == "u");
  CHECK(connect.header("passcode") == "p");
  CHECK(connect.body.empty());

  SubscriptionRequest request;
  request.from = common::Destination{true, "orders"};
  request.durable = "sub-7";
  request.client_ack = true;
  request.prefetch = 5;
  StompFrame subscribe;
  stompSubscribeFrame(request, "2", "sub-9", subscribe);
  CHECK(subscribe.header("destination") == "/topic/orders");
  CHECK(subscribe.header("ack") == "client-individual");
  CHECK(subscribe.header("activemq.subscriptionName") == "sub-7");
  CHECK(subscribe.header("activemq.prefetchSize") == "5");
  CHECK(subscribe.header("receipt") == "sub-9");
  request.durable.clear();
  request.prefetch = 0;
  request.client_ack = false;
  stompSubscribeFrame(request, "3", "sub-10", subscribe);
  CHECK(subscribe.header("ack") == "auto");
  CHECK_FALSE(subscribe.header("activemq.subscriptionName"));
  CHECK_FALSE(subscribe.header("activemq.prefetchSize"));

  const common::Destination queue{false, "work"};
  const std::vector<std::pair<std::string, std::string>> properties{{"region", "eu"}};
  OutMessage message{&queue, "hello", &properties, false};
  StompFrame send;
  stompSendFrame(message, "", send);
  CHECK(send.header("destination") == "/queue/work");
  CHECK(send.header("persistent") == "false");
  CHECK(send.header("region") == "eu");
  CHECK_FALSE(send.header("receipt"));
  CHECK(send.body == "hello");
  stompSendFrame(message, "12", send);
  CHECK(send.header("receipt") == "12");
}

TEST_CASE("a MESSAGE frame becomes the engine's message", "[stomp]") {
  StompFrame frame;
  frame.command = "MESSAGE";
  frame.headers = {{"message-id", "m-1"}, {"ack", "a-1"}, {"redelivered", "true"}, {"k", "v"}};
  frame.body = "order 1";
  const InMessage m = takeStompMessage(frame);
  CHECK(m.ack_id == "a-1");
  CHECK(m.redelivered);
  CHECK(m.body == "order 1");
  CHECK(m.property("k") == "v");
  CHECK(m.property("absent").empty());
  StompFrame no_ack;
  no_ack.headers = {{"message-id", "m-2"}};
  CHECK(takeStompMessage(no_ack).ack_id == "m-2");
  CHECK_FALSE(takeStompMessage(no_ack).redelivered);
}
