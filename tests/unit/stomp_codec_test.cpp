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

TEST_CASE("stomp heart-beat header: two numbers, negotiated per direction", "[stomp]") {
  using stampede::worker::negotiateStompHeartBeat;
  using stampede::worker::parseStompHeartBeat;
  using stampede::worker::StompHeartBeat;
  const auto hb = parseStompHeartBeat("10000,5000");
  REQUIRE(hb);
  CHECK(hb->send_ms == 10000);
  CHECK(hb->receive_ms == 5000);
  CHECK(parseStompHeartBeat("0,0"));
  CHECK(parseStompHeartBeat(" 1, 2 "));
  for (const char* bad : {"", "10", "a,b", "1,", ",1", "1,2,3", "-1,5", "1;2"})
    CHECK_FALSE(parseStompHeartBeat(bad));

  auto in_use = [](StompHeartBeat ours, StompHeartBeat broker) {
    const auto r = negotiateStompHeartBeat(ours, broker);
    return std::pair(r.send_ms, r.receive_ms);
  };
  // Ours cx,cy against the broker's sx,sy: we send every max(cx, sy), it every max(sx, cy).
  CHECK(in_use({1000, 2000}, {3000, 500}) == std::pair<uint64_t, uint64_t>(1000, 3000));
  CHECK(in_use({1000, 2000}, {500, 4000}) == std::pair<uint64_t, uint64_t>(4000, 2000));
  // A zero on either side switches that direction off.
  CHECK(in_use({0, 2000}, {500, 4000}) == std::pair<uint64_t, uint64_t>(0, 2000));
  CHECK(in_use({1000, 2000}, {0, 4000}) == std::pair<uint64_t, uint64_t>(4000, 0));
  CHECK(in_use({1000, 2000}, {0, 0}) == std::pair<uint64_t, uint64_t>(0, 0));
}

TEST_CASE("stomp heart-beat EOLs before, between and after frames are skipped at any split",
          "[stomp]") {
  using namespace std::string_literals;
  const std::string wire =
      "\n\r\n\nRECEIPT\nreceipt-id:1\n\n\0\n\n\nRECEIPT\nreceipt-id:2\n\n\0\n"s;
  for (size_t cut = 0; cut <= wire.size(); ++cut) {
    std::string error;
    const auto frames = parseSplit(wire, cut, &error);
    INFO("cut at " << cut);
    CHECK(error.empty());
    REQUIRE(frames.size() == 2);
    CHECK(frames[1].header("receipt-id") == "2");
  }
}
