#include "worker/stomp_codec.h"

#include <catch2/catch.hpp>

using stampede::worker::encodeStompFrame;
using stampede::worker::StompFrame;
using stampede::worker::StompParser;

namespace {

// Feeds `wire` cut at `cut` (two pieces, the parser keeps what it must) and returns the frames.
std::vector<StompFrame> parseSplit(std::string_view wire, size_t cut, std::string* error) {
  StompParser parser;
  std::vector<StompFrame> frames;
  std::string pending;
  for (std::string_view piece : {wire.substr(0, cut), wire.substr(cut)}) {
    pending.append(piece);
    for (;;) {
      size_t used = 0;
      StompFrame frame;
      const auto status = parser.feed(pending, used, frame);
      pending.erase(0, used);
      if (status == StompParser::Status::Error) {
        *error = parser.error();
        return frames;
      }
      if (status == StompParser::Status::NeedMore)
        break;
      frames.push_back(std::move(frame));
    }
  }
  return frames;
}

} // namespace

TEST_CASE("stomp frames parse alike at every split point", "[stomp]") {
  StompFrame message;
  message.command = "MESSAGE";
  message.headers = {{"destination", "/topic/orders"},
                     {"message-id", "ID:a:b"},
                     {"weird:name", "line\nbreak\\and\rcr"},
                     {"stampede_seq", "7"}};
  message.body = "{\"order\": 1}";
  StompFrame binary;
  binary.command = "MESSAGE";
  binary.headers = {{"subscription", "1"}};
  binary.body = std::string("a\0b", 3);
  StompFrame receipt;
  receipt.command = "RECEIPT";
  receipt.headers = {{"receipt-id", "42"}};
  std::string wire = "\n\r\n"; // heart-beats before
  encodeStompFrame(message, wire);
  wire += "\n"; // a heart-beat between frames
  encodeStompFrame(binary, wire);
  encodeStompFrame(receipt, wire, false);
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    INFO("cut at " << cut);
    std::string error;
    const auto frames = parseSplit(wire, cut, &error);
    REQUIRE(error.empty());
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].command == "MESSAGE");
    CHECK(frames[0].headers == message.headers);
    CHECK(frames[0].body == message.body);
    CHECK(frames[1].body == binary.body);
    CHECK(frames[1].header("content-length") == "3");
    CHECK(frames[2].command == "RECEIPT");
    CHECK(frames[2].header("receipt-id") == "42");
    CHECK(frames[2].body.empty());
  }
}

TEST_CASE("stomp CRLF lines and the first of repeated headers", "[stomp]") {
  const std::string wire =
      std::string("CONNECTED\r\nversion:1.2\r\nversion:1.1\r\nserver:x\\y\r\n\r\n") + '\0';
  std::string error;
  const auto frames = parseSplit(wire, 5, &error);
  REQUIRE(frames.size() == 1);
  CHECK(frames[0].header("version") == "1.2");
  CHECK(frames[0].header("server") == "x\\y"); // CONNECTED is not unescaped
}

TEST_CASE("stomp parser refuses malformed frames with a reason", "[stomp]") {
  struct Bad {
    std::string wire;
    std::string why;
  };
  const Bad cases[] = {
      {std::string("message\n\n") + '\0', "bad STOMP command line"},
      {std::string("MESSAGE\nnocolon\n\n") + '\0', "bad STOMP header line"},
      {std::string("MESSAGE\n:v\n\n") + '\0', "bad STOMP header line"},
      {std::string("MESSAGE\na:b\\t\n\n") + '\0', "bad escape"},
      {std::string("MESSAGE\ncontent-length:x\n\n") + '\0', "bad content-length"},
      {std::string("MESSAGE\ncontent-length:-1\n\n") + '\0', "bad content-length"},
      {std::string("MESSAGE\ncontent-length:2\n\nabc") + '\0', "longer than its content-length"},
      {std::string("MESSAGE\ncontent-length:99999999999\n\n"), "over the limit"},
  };
  for (const auto& bad : cases) {
    for (size_t cut = 0; cut <= bad.wire.size(); ++cut) {
      INFO(bad.wire << " cut at " << cut);
      std::string error;
      parseSplit(bad.wire, cut, &error);
      CHECK_THAT(error, Catch::Contains(bad.why));
    }
  }
  StompParser parser;
  size_t used = 0;
  StompFrame out;
  const std::string endless(StompParser::kMaxHeadBytes + 10, 'A');
  CHECK(parser.feed(endless, used, out) == StompParser::Status::Error);
  CHECK_THAT(parser.error(), Catch::Contains("head over"));
  StompParser small(4);
  const std::string big = std::string("MESSAGE\n\nabcdef") + '\0';
  CHECK(small.feed(big, used, out) == StompParser::Status::Error);
}

TEST_CASE("stomp CONNECT headers are written unescaped, others escaped", "[stomp]") {
  StompFrame connect;
  connect.command = "CONNECT";
  connect.headers = {{"passcode", "a:b"}};
  std::string wire;
  encodeStompFrame(connect, wire);
  CHECK(wire == std::string("CONNECT\npasscode:a:b\n\n") + '\0');
  StompFrame send;
  send.command = "SEND";
  send.headers = {{"k", "a:b\n"}};
  send.body = "hi";
  wire.clear();
  encodeStompFrame(send, wire);
  CHECK(wire == std::string("SEND\nk:a\\cb\\n\n\nhi") + '\0');
}
