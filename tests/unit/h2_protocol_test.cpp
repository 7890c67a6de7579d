// H2Protocol against an nghttp2 server session in memory: the bytes each side sends are fed to
// the other until neither has more to say. The server answers, resets, refuses or sends GOAWAY
// as a test tells it.
#include "worker/h2_protocol.h"

#include <catch2/catch.hpp>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace stampede::worker {
namespace {

// The server side: records requests as they complete, answers when answer() is called.
class Server {
public:
  explicit Server(std::vector<nghttp2_settings_entry> settings = {}) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Server::onFrameRecv);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, &Server::onBeginHeaders);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Server::onStreamClose);
    nghttp2_session_callbacks_set_on_header_callback(cb, &Server::onHeader);
    nghttp2_session_server_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  }
  ~Server() { nghttp2_session_del(session_); }

  // Answers every request waiting: status 200 and `body`.
  void answerAll(const std::string& body) {
    const auto ids = waiting_;
    for (int32_t id : ids)
      answer(id, 200, body);
  }
  // `length`: the Content-Length sent, if not the body's.
  void answer(int32_t id, int status, const std::string& body,
              std::optional<size_t> length_sent = {}) {
    bodies_[id] = std::make_unique<Body>(Body{body, 0});
    const std::string code = std::to_string(status);
    const std::string length = std::to_string(length_sent.value_or(body.size()));
    nghttp2_nv nv[] = {field(":status", code), field("content-length", length),
                       field(extra_name.c_str(), extra_value)};
    nghttp2_data_provider provider{};
    provider.source.ptr = bodies_[id].get();
    provider.read_callback = &Server::readBody;
    nghttp2_submit_response(session_, id, nv, 3, &provider);
    std::erase(waiting_, id);
  }
  void reset(int32_t id, uint32_t code) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code);
    std::erase(waiting_, id);
  }
  void goaway(int32_t last_id, uint32_t code) {
    nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last_id, code, nullptr, 0);
  }

  // The third field of every answer.
  std::string extra_name = "x-test";
  std::string extra_value = "yes";

  nghttp2_session* session_ = nullptr;
  std::vector<int32_t> waiting_; // requests received, not answered, in order
  std::vector<std::string> paths_;
  int open_ = 0;
  int max_open_ = 0;

private:
  struct Body {
    std::string text;
    size_t sent;
  };
  static nghttp2_nv field(const char* name, const std::string& value) {
    return nghttp2_nv{(uint8_t*)name, (uint8_t*)value.data(), strlen(name), value.size(),
                      NGHTTP2_NV_FLAG_NONE};
  }
  static Server& self(void* user) { return *static_cast<Server*>(user); }
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame*, void* user) {
    auto& s = self(user);
    s.max_open_ = std::max(s.max_open_, ++s.open_);
    return 0;
  }
  static int onStreamClose(nghttp2_session*, int32_t, uint32_t, void* user) {
    --self(user).open_;
    return 0;
  }
  static int onHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t nlen,
                      const uint8_t* value, size_t vlen, uint8_t, void* user) {
    if (std::string_view((const char*)name, nlen) == ":path")
      self(user).paths_.emplace_back((const char*)value, vlen);
    return 0;
  }
  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
      self(user).waiting_.push_back(frame->hd.stream_id);
    return 0;
  }
  static ssize_t readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) {
    auto* b = static_cast<Body*>(source->ptr);
    const size_t n = std::min(length, b->text.size() - b->sent);
    memcpy(buf, b->text.data() + b->sent, n);
    b->sent += n;
    if (b->sent == b->text.size())
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    return ssize_t(n);
  }
  std::map<int32_t, std::unique_ptr<Body>> bodies_;
};

// Moves bytes both ways until neither side sends more. Returns the bytes the server sent.
size_t pump(H2Protocol& client, Server& server) {
  size_t to_client = 0;
  for (int round = 0; round < 10000; ++round) {
    std::string out;
    client.send(out);
    if (!out.empty())
      REQUIRE(nghttp2_session_mem_recv(server.session_, (const uint8_t*)out.data(), out.size()) ==
              ssize_t(out.size()));
    const uint8_t* data = nullptr;
    std::string back;
    for (ssize_t n; (n = nghttp2_session_mem_send(server.session_, &data)) > 0;)
      back.append((const char*)data, size_t(n));
    if (!back.empty())
      client.receive((const uint8_t*)back.data(), back.size());
    to_client += back.size();
    if (out.empty() && back.empty())
      break;
  }
  return to_client;
}

H2Stream& submitGet(H2Protocol& client, std::vector<std::unique_ptr<H2Stream>>& streams,
                    std::string_view path = "/") {
  streams.push_back(std::make_unique<H2Stream>());
  H2Stream& s = *streams.back();
  s.max_body = 64 << 20;
  REQUIRE(client.submit(s, "GET", "http", "127.0.0.1:8080", path, nullptr, {}, true, true));
  return s;
}

TEST_CASE("h2: a response arrives whole, its bytes_in counted from its frames", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& s = submitGet(client, streams, "/a?b=1");
  pump(client, server);
  REQUIRE(server.waiting_.size() == 1);
  CHECK(server.paths_ == std::vector<std::string>{"/a?b=1"});
  server.answerAll("hello");
  pump(client, server);
  REQUIRE(s.closed);
  INFO(s.detail);
  CHECK(s.error == TransportError::None);
  CHECK(s.status == 200);
  CHECK(s.body == "hello");
  CHECK(s.field("X-Test") == "yes");
  const HeaderList fields = s.headerList();
  CHECK(std::count(fields.begin(), fields.end(), HeaderList::value_type{"x-test", "yes"}));
  // One HEADERS and one DATA frame: 9-byte frame headers, the HPACK block, the 5 bytes.
  CHECK(s.bytes_in > 2 * 9 + 5);
  CHECK(s.bytes_in < 2 * 9 + 5 + 64);
  CHECK(s.bytes_out > 9);
  CHECK(client.closed().size() == 1);
}

TEST_CASE("h2: RST_STREAM fails that stream only, as stream_reset with its code", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& a = submitGet(client, streams);
  H2Stream& b = submitGet(client, streams);
  pump(client, server);
  server.reset(a.id, NGHTTP2_INTERNAL_ERROR);
  server.answerAll("ok");
  pump(client, server);
  REQUIRE(a.closed);
  CHECK(a.error == TransportError::StreamReset);
  CHECK_THAT(a.detail, Catch::Contains("INTERNAL_ERROR (2)"));
  CHECK(std::string(errorKindName(a.error)) == "stream_reset");
  REQUIRE(b.closed);
  CHECK(b.error == TransportError::None);
  CHECK(b.body == "ok");
}

TEST_CASE("h2: REFUSED_STREAM is its own error kind", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& a = submitGet(client, streams);
  pump(client, server);
  server.reset(a.id, NGHTTP2_REFUSED_STREAM);
  pump(client, server);
  REQUIRE(a.closed);
  CHECK(a.error == TransportError::RefusedStream);
  CHECK(std::string(errorKindName(a.error)) == "refused_stream");
}

TEST_CASE("h2: GOAWAY in the middle of a run", "[h2]") {
  const bool graceful = GENERATE(true, false);
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  for (int i = 0; i < 4; ++i)
    submitGet(client, streams);
  pump(client, server);
  REQUIRE(server.waiting_.size() == 4);
  // The first two are answered; GOAWAY leaves out the last two.
  server.answer(streams[0]->id, 200, "one");
  const int32_t last = streams[1]->id;
  server.answer(last, 200, "two");
  server.goaway(last, graceful ? NGHTTP2_NO_ERROR : NGHTTP2_INTERNAL_ERROR);
  pump(client, server);
  CHECK(client.goingAway());
  CHECK(streams[0]->error == TransportError::None);
  CHECK(streams[1]->error == TransportError::None);
  CHECK(streams[1]->body == "two");
  for (int i = 2; i < 4; ++i) {
    INFO("stream " << i);
    REQUIRE(streams[i]->closed);
    // Never processed: the engine sends it again on a fresh connection.
    CHECK(streams[i]->unprocessed);
    CHECK(streams[i]->error == (graceful ? TransportError::Reset : TransportError::GoAway));
    CHECK_THAT(streams[i]->detail, Catch::Contains("GOAWAY"));
  }
  // No new stream starts on a connection going away.
  H2Stream late;
  CHECK_FALSE(client.submit(late, "GET", "http", "h", "/", nullptr, {}, true, true));
  CHECK(late.unprocessed);
}

TEST_CASE("h2: the connection lost fails every stream in flight", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  for (int i = 0; i < 3; ++i)
    submitGet(client, streams);
  pump(client, server);
  client.fail(TransportError::Reset, "the server closed the connection");
  for (auto& s : streams) {
    CHECK(s->closed);
    CHECK(s->error == TransportError::Reset);
    CHECK_THAT(s->detail, Catch::Contains("3 streams in flight"));
  }
  CHECK(client.openStreams() == 0);
  CHECK(client.closed().size() == 3);
}

TEST_CASE("h2: a large body under a small window arrives whole", "[h2]") {
  H2Settings settings;
  settings.window = 16 * 1024;
  H2Protocol client(settings);
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& s = submitGet(client, streams);
  pump(client, server);
  // The server was told the window: it may send 16 KiB before a WINDOW_UPDATE.
  CHECK(nghttp2_session_get_remote_settings(server.session_,
                                            NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE) == 16 * 1024);
  std::string body(1 << 20, '\0');
  for (size_t i = 0; i < body.size(); ++i)
    body[i] = char('a' + i % 26);
  server.answerAll(body);
  pump(client, server);
  REQUIRE(s.closed);
  CHECK(s.error == TransportError::None);
  CHECK(s.body.size() == body.size());
  CHECK(s.body == body);
  CHECK(s.bytes_in >= body.size() + 9 * (body.size() / 16384));
}

TEST_CASE("h2: a body over max_body fails as body_too_large", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& s = submitGet(client, streams);
  s.max_body = 100;
  pump(client, server);
  server.answerAll(std::string(1000, 'x'));
  pump(client, server);
  REQUIRE(s.closed);
  CHECK(s.error == TransportError::BodyTooLarge);
}

TEST_CASE("h2: SETTINGS_MAX_CONCURRENT_STREAMS holds back streams beyond it", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server({{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
  pump(client, server); // the server's SETTINGS arrive first
  std::vector<std::unique_ptr<H2Stream>> streams;
  for (int i = 0; i < 5; ++i)
    submitGet(client, streams);
  for (int round = 0; round < 10; ++round) {
    pump(client, server);
    CHECK(server.waiting_.size() <= 2);
    server.answerAll("x");
  }
  pump(client, server);
  CHECK(server.max_open_ == 2);
  for (auto& s : streams) {
    CHECK(s->closed);
    CHECK(s->error == TransportError::None);
  }
}

TEST_CASE("h2: forget() resets the stream and nothing more lands in it", "[h2]") {
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& s = submitGet(client, streams);
  pump(client, server);
  const int32_t id = s.id;
  client.forget(s);
  CHECK(client.openStreams() == 0);
  server.answer(id, 200, "late");
  pump(client, server);
  CHECK(s.body.empty());
  CHECK(client.closed().empty());
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

TEST_CASE("h2: requests made before the server's SETTINGS wait for its limit", "[h2]") {
  // Without the wait, nghttp2 sends up to 100 at once and the server refuses the third.
  H2Protocol client(H2Settings{});
  Server server({{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
  std::vector<std::unique_ptr<H2Stream>> streams;
  for (int i = 0; i < 5; ++i)
    submitGet(client, streams);
  for (int round = 0; round < 10; ++round) {
    pump(client, server);
    server.answerAll("x");
  }
  pump(client, server);
  CHECK(server.max_open_ <= 2);
  for (auto& s : streams) {
    CHECK(s->closed);
    INFO(s->detail);
    CHECK(s->error == TransportError::None);
  }
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

TEST_CASE("h2: streams a graceful GOAWAY leaves out go again on new connections, none lost",
          "[h2]") {
  // The engine's loop, without sockets: every connection's server answers the first 3 streams
  // it receives, then sends GOAWAY (NO_ERROR) with the third as last_stream_id, as nginx does
  // with keepalive_requests 3. Ten users share a connection; each sends 4 requests in turn.
  // A stream left out goes again (sendAgain) on the next connection, woken in wakeOrder; a
  // stream at or below last_stream_id completes where it is.
  struct User {
    H2Stream stream;
    int sent = 0;     // requests begun
    int attempt = 0;  // of the current one
    int answered = 0; // requests completed
  };
  constexpr int kUsers = 10;
  constexpr int kRequests = 4;
  H2Memory memory;
  H2Settings settings;
  settings.memory = &memory;
  std::vector<User> users(kUsers);
  uint64_t tickets = 0;
  std::vector<std::string> served; // every path the servers answered, in order
  std::vector<H2Stream*> ready;    // streams to submit on the next connection, in order
  for (User& u : users) {
    u.stream.max_body = 1 << 20;
    u.stream.ticket = ++tickets;
    ready.push_back(&u.stream);
  }
  auto userOf = [&](H2Stream* s) -> User& {
    return *std::find_if(users.begin(), users.end(), [&](User& u) { return &u.stream == s; });
  };
  int connections = 0;
  int left_out = 0;
  while (!ready.empty() && connections < 200) {
    ++connections;
    H2Protocol client(settings);
    Server server;
    for (H2Stream* s : ready) {
      User& u = userOf(s);
      const std::string path = "/u" + std::to_string(&u - users.data()) + "/r" +
                               std::to_string(u.sent - (u.attempt == 0 ? 0 : 1));
      if (u.attempt == 0)
        ++u.sent;
      REQUIRE(client.submit(*s, "GET", "http", "127.0.0.1:8080", path, nullptr, {}, true, true));
    }
    ready.clear();
    pump(client, server);
    // The first three are answered; GOAWAY leaves the rest out. (waiting_ and paths_ are in
    // the order the requests arrived.)
    const std::vector<int32_t> received = server.waiting_;
    REQUIRE(server.paths_.size() == received.size());
    std::vector<size_t> by_id(received.size());
    for (size_t i = 0; i < by_id.size(); ++i)
      by_id[i] = i;
    std::sort(by_id.begin(), by_id.end(),
              [&](size_t a, size_t b) { return received[a] < received[b]; });
    const size_t taken = std::min<size_t>(3, received.size());
    for (size_t i = 0; i < taken; ++i) {
      served.push_back(server.paths_[by_id[i]]);
      server.answer(received[by_id[i]], 200, "ok");
    }
    server.goaway(taken ? received[by_id[taken - 1]] : 0, NGHTTP2_NO_ERROR);
    pump(client, server);
    REQUIRE(client.openStreams() == 0);
    wakeOrder(client.closed());
    for (H2Stream* s : client.closed()) {
      User& u = userOf(s);
      if (s->error == TransportError::None) {
        CHECK(s->body == "ok");
        ++u.answered;
        u.attempt = 0;
        if (u.sent < kRequests) {
          s->ticket = ++tickets;
          ready.push_back(s);
        }
        continue;
      }
      INFO("user " << (&u - users.data()) << ", attempt " << u.attempt << ": " << s->detail);
      CHECK(s->unprocessed);
      CHECK(s->error == TransportError::Reset); // graceful: not an error of its own kind
      ++left_out;
      REQUIRE(sendAgain(*s, false, u.attempt));
      ++u.attempt;
      ready.push_back(s);
    }
    client.closed().clear();
  }
  CHECK(left_out > 0);
  for (const User& u : users)
    CHECK(u.answered == kRequests);
  // Every request answered once: 40 at 3 a connection.
  CHECK(served.size() == size_t(kUsers * kRequests));
  std::sort(served.begin(), served.end());
  CHECK(std::adjacent_find(served.begin(), served.end()) == served.end());
  CHECK(connections == (kUsers * kRequests + 2) / 3);
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

TEST_CASE("h2: H2Memory recycles a freed block of the same class and keeps data on realloc",
          "[h2]") {
  H2Memory memory;
  nghttp2_mem* mem = memory.mem();
  void* a = mem->malloc(100, mem->mem_user_data);
  REQUIRE(a);
  mem->free(a, mem->mem_user_data);
  CHECK(mem->malloc(120, mem->mem_user_data) == a); // the same 128-byte class, reused
  auto* grown = static_cast<char*>(mem->realloc(a, 40000, mem->mem_user_data)); // over 8 KiB
  REQUIRE(grown);
  std::memset(grown, 'x', 40000);
  auto* larger = static_cast<char*>(mem->realloc(grown, 90000, mem->mem_user_data));
  REQUIRE(larger);
  CHECK(std::count(larger, larger + 40000, 'x') == 40000);
  auto* zeroed = static_cast<char*>(mem->calloc(10, 30, mem->mem_user_data));
  REQUIRE(zeroed);
  CHECK(std::count(zeroed, zeroed + 300, '\0') == 300);
  mem->free(larger, mem->mem_user_data);
  mem->free(zeroed, mem->mem_user_data);
  mem->free(nullptr, mem->mem_user_data);
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

TEST_CASE("h2: a body shorter or longer than its Content-Length fails; HEAD has none", "[h2]") {
  // nghttp2's HTTP messaging checks are off: H2Protocol checks Content-Length itself.
  H2Protocol client(H2Settings{});
  Server server;
  std::vector<std::unique_ptr<H2Stream>> streams;
  H2Stream& shorter = submitGet(client, streams);
  H2Stream& longer = submitGet(client, streams);
  H2Stream& exact = submitGet(client, streams);
  streams.push_back(std::make_unique<H2Stream>());
  H2Stream& head = *streams.back();
  REQUIRE(client.submit(head, "HEAD", "http", "h", "/", nullptr, {}, true, true));
  pump(client, server);
  REQUIRE(server.waiting_.size() == 4);
  server.answer(shorter.id, 200, "12345", 10);
  server.answer(longer.id, 200, "1234567890", 5);
  server.answer(exact.id, 200, "12345");
  server.answer(head.id, 200, "", 1234);
  pump(client, server);
  REQUIRE(shorter.closed);
  CHECK(shorter.error == TransportError::Protocol);
  CHECK(shorter.detail == "body of 5 bytes, Content-Length 10");
  REQUIRE(longer.closed);
  CHECK(longer.error == TransportError::Protocol);
  CHECK(exact.error == TransportError::None);
  CHECK(head.error == TransportError::None);
  CHECK(head.status == 200);
}

TEST_CASE("h2: a malformed response field fails the stream, as the HTTP/1.1 parser does", "[h2]") {
  // nghttp2's HTTP messaging checks are off: H2Protocol checks each field itself.
  for (const auto& [name, value] : {std::pair<std::string, std::string>{"bad name", "yes"},
                                    {"x-test", "a\nb"},
                                    {"x-test", std::string("a\0b", 3)}}) {
    H2Protocol client(H2Settings{});
    Server server;
    server.extra_name = name;
    server.extra_value = value;
    INFO("field " << name);
    std::vector<std::unique_ptr<H2Stream>> streams;
    H2Stream& bad = submitGet(client, streams);
    pump(client, server);
    server.answerAll("12345");
    pump(client, server);
    REQUIRE(bad.closed);
    CHECK(bad.error == TransportError::Protocol);
    CHECK(bad.detail.starts_with("malformed response field"));
  }
}

} // namespace
} // namespace stampede::worker
