// The HttpClient contract, run against every engine and a small HTTP/1.1 server on 127.0.0.1.
#include "worker/http_client.h"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace stampede::worker {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Routes: /ok, /ok-then-close (answers as keep-alive, then closes), /size/<bytes>, /status/<code>,
// /slow/<ms>, /close (closes without answering), /echo (the request body back, X-Test echoed as
// X-Echo). Single-threaded poll loop so that a few hundred keep-alive connections cost nothing;
// every connection, byte and request is counted for the tests' assertions.
class TestServer {
public:
  TestServer() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 1024) != 0)
      throw std::runtime_error("test server: bind/listen failed");
    socklen_t len = sizeof addr;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
    for (auto& c : conns_)
      ::close(c.fd);
    ::close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  int accepts() const { return accepts_; }
  int requests() const { return requests_; }
  uint64_t bytesRead() const { return bytes_read_; }
  uint64_t bytesWritten() const { return bytes_written_; }
  // The head (request line and headers) and body of the last /echo request.
  std::pair<std::string, std::string> lastEcho() const {
    std::lock_guard lock(mutex_);
    return last_echo_;
  }

private:
  struct Conn {
    int fd = -1;
    std::string in;
    std::string out;
    bool close_after_write = false;
    std::optional<Clock::time_point> due; // a delayed response waits in `delayed`
    std::string delayed;
  };

  static std::string response(int status, std::string_view body, bool close,
                              std::string_view extra = {}) {
    std::string r = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " Error");
    r += "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    r += extra;
    if (close)
      r += "Connection: close\r\n";
    r += "\r\n";
    r += body;
    return r;
  }

  static std::string headerValue(std::string_view head, std::string_view name) {
    size_t pos = 0;
    while ((pos = head.find("\r\n", pos)) != head.npos) {
      pos += 2;
      auto line = head.substr(pos, head.find("\r\n", pos) - pos);
      if (line.size() > name.size() && line[name.size()] == ':' &&
          strncasecmp(line.data(), name.data(), name.size()) == 0) {
        auto value = line.substr(name.size() + 1);
        while (!value.empty() && value.front() == ' ')
          value.remove_prefix(1);
        return std::string(value);
      }
    }
    return {};
  }

  // Handles complete requests in c.in; false when the connection must close now.
  bool serve(Conn& c) {
    while (!c.due) {
      auto head_end = c.in.find("\r\n\r\n");
      if (head_end == std::string::npos)
        return true;
      std::string head = c.in.substr(0, head_end);
      auto cl = headerValue(head, "Content-Length");
      size_t body_len = cl.empty() ? 0 : std::stoul(cl);
      if (c.in.size() < head_end + 4 + body_len)
        return true;
      std::string body = c.in.substr(head_end + 4, body_len);
      c.in.erase(0, head_end + 4 + body_len);
      ++requests_;

      auto sp1 = head.find(' ');
      auto sp2 = head.find(' ', sp1 + 1);
      std::string path = head.substr(sp1 + 1, sp2 - sp1 - 1);
      bool close = strcasecmp(headerValue(head, "Connection").c_str(), "close") == 0;
      bool is_head = head.compare(0, 5, "HEAD ") == 0;
      auto reply = [&](std::string r) {
        if (is_head)
          r.erase(r.find("\r\n\r\n") + 4);
        c.out += r;
      };
      if (path == "/ok") {
        reply(response(200, "hello, stampede", close));
      } else if (path == "/ok-then-close") {
        reply(response(200, "hello, stampede", false));
        close = true; // as a server's keep-alive timeout would, without saying so
      } else if (path.rfind("/size/", 0) == 0) {
        reply(response(200, std::string(std::stoul(path.substr(6)), 'x'), close));
      } else if (path.rfind("/status/", 0) == 0) {
        reply(response(std::stoi(path.substr(8)), "status body", close));
      } else if (path.rfind("/slow/", 0) == 0) {
        c.due = Clock::now() + std::chrono::milliseconds(std::stoi(path.substr(6)));
        c.delayed = response(200, "slow", close);
      } else if (path == "/close") {
        return false;
      } else if (path == "/echo") {
        {
          std::lock_guard lock(mutex_);
          last_echo_ = {head, body};
        }
        reply(response(200, body, close, "X-Echo: " + headerValue(head, "X-Test") + "\r\n"));
      } else {
        reply(response(404, "not found", close));
      }
      if (close) {
        c.close_after_write = true;
        return true;
      }
    }
    return true;
  }

  void loop() {
    std::vector<pollfd> fds;
    while (!stop_) {
      fds.clear();
      fds.push_back({listen_fd_, POLLIN, 0});
      int timeout_ms = 10;
      auto now = Clock::now();
      for (auto& c : conns_) {
        short events = POLLIN;
        if (!c.out.empty())
          events |= POLLOUT;
        fds.push_back({c.fd, events, 0});
        if (c.due) {
          auto ms = std::chrono::ceil<std::chrono::milliseconds>(*c.due - now).count();
          timeout_ms = std::clamp<int>(static_cast<int>(ms), 0, timeout_ms);
        }
      }
      ::poll(fds.data(), fds.size(), timeout_ms);

      if (fds[0].revents & POLLIN) {
        while (true) {
          int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK);
          if (fd < 0)
            break;
          ++accepts_;
          conns_.emplace_back().fd = fd;
        }
      }
      now = Clock::now();
      std::vector<Conn> alive;
      alive.reserve(conns_.size());
      for (size_t i = 0; i < conns_.size(); ++i) {
        Conn& c = conns_[i];
        short revents = i + 1 < fds.size() && fds[i + 1].fd == c.fd ? fds[i + 1].revents : 0;
        bool keep = true;
        if (revents & (POLLIN | POLLHUP | POLLERR)) {
          char buf[65536];
          while (true) {
            ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
            if (n > 0) {
              bytes_read_ += n;
              c.in.append(buf, n);
            } else {
              if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
                keep = false;
              break;
            }
          }
        }
        if (keep && c.due && now >= *c.due) {
          c.out += c.delayed;
          c.due.reset();
          c.close_after_write = c.delayed.find("Connection: close") != std::string::npos;
        }
        if (keep && !c.close_after_write)
          keep = serve(c);
        while (keep && !c.out.empty()) {
          ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL);
          if (n > 0) {
            bytes_written_ += n;
            c.out.erase(0, n);
          } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
              keep = false;
            break;
          }
        }
        if (keep && c.close_after_write && c.out.empty())
          keep = false;
        if (keep)
          alive.push_back(std::move(c));
        else
          ::close(c.fd);
      }
      conns_ = std::move(alive);
    }
  }

  int listen_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepts_{0};
  std::atomic<int> requests_{0};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::vector<Conn> conns_; // server thread only
  mutable std::mutex mutex_;
  std::pair<std::string, std::string> last_echo_;
};

// A port on 127.0.0.1 with nothing listening (bound, then released).
uint16_t unusedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The server counts a send() after it returns, possibly after the client has read the bytes.
bool eventually(const std::function<bool()>& condition) {
  auto deadline = Clock::now() + 1s;
  while (!condition() && Clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  return condition();
}

struct Engine {
  const char* name;
  std::unique_ptr<HttpClient> (*make)(asio::io_context&, const common::HttpSpec&);
};

// Runs `test` once per engine, each in its own Catch section.
template <class F> void forEachEngine(F&& test) {
  static const Engine engines[] = {
      {"beast", &makeBeastClient},
      {"curl", &makeCurlClient},
  };
  for (const auto& engine : engines) {
    DYNAMIC_SECTION(engine.name) {
      test(engine);
    }
  }
}

common::Endpoint endpointAt(uint16_t port) {
  common::Endpoint e;
  e.scheme = "http";
  e.host = "127.0.0.1";
  e.port = port;
  return e;
}

HttpRequest get(const common::Endpoint& endpoint, std::string_view target,
                std::chrono::milliseconds timeout = 5s) {
  HttpRequest r;
  r.method = "GET";
  r.endpoint = &endpoint;
  r.target = target;
  r.timeout = timeout;
  return r;
}

// Drives `io` until the coroutine `body` finishes; false if it did not within `limit`. Not
// io.run(): an engine may keep waits armed on idle connections.
bool runUntilDone(asio::io_context& io, std::function<asio::awaitable<void>()> body,
                  std::chrono::milliseconds limit = 20s) {
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        co_await body();
        done = true;
      },
      asio::detached);
  auto deadline = Clock::now() + limit;
  while (!done && Clock::now() < deadline) {
    if (io.stopped())
      io.restart();
    io.run_one_until(deadline);
  }
  return done;
}

HttpResponse performOne(asio::io_context& io, HttpSession& session, const HttpRequest& request) {
  HttpResponse out;
  REQUIRE(
      runUntilDone(io, [&]() -> asio::awaitable<void> { co_await session.perform(request, out); }));
  return out;
}

TEST_CASE("GET returns status, body and wire byte counts", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    auto out = performOne(io, *session, get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 200);
    CHECK(out.body == "hello, stampede");
    CHECK(eventually([&] { return out.bytes_in == server.bytesWritten(); }));
    CHECK(out.bytes_in > 15);
    CHECK(out.bytes_out == server.bytesRead());
    auto headers = session->lastResponseHeaders();
    CHECK(std::find(headers.begin(), headers.end(),
                    std::pair<std::string, std::string>("Content-Length", "15")) != headers.end());
  });
}

TEST_CASE("a host name is resolved", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());
    endpoint.host = "localhost"; // may resolve to ::1 first, where nothing listens

    auto out = performOne(io, *session, get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 200);
  });
}

TEST_CASE("a body larger than the read buffer arrives whole", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    auto out = performOne(io, *session, get(endpoint, "/size/300000"));
    REQUIRE(out.error == TransportError::None);
    CHECK(out.body == std::string(300000, 'x'));
    CHECK(eventually([&] { return out.bytes_in == server.bytesWritten(); }));
  });
}

TEST_CASE("keep-alive reuses one connection across 100 requests", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    int ok = 0;
    REQUIRE(runUntilDone(io, [&]() -> asio::awaitable<void> {
      HttpResponse out;
      for (int i = 0; i < 100; ++i) {
        co_await session->perform(get(endpoint, "/ok"), out);
        ok += out.status == 200;
      }
    }));
    CHECK(ok == 100);
    CHECK(server.accepts() == 1);
  });
}

TEST_CASE("a keep-alive connection the server closed while idle is replaced", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    for (int i = 0; i < 3; ++i) {
      auto out = performOne(io, *session, get(endpoint, "/ok-then-close"));
      CHECK(out.error == TransportError::None);
      CHECK(out.status == 200);
      std::this_thread::sleep_for(20ms); // the close reaches the client before the next send
    }
    CHECK(server.accepts() == 3);
  });
}

TEST_CASE("keep_alive false opens a connection per request", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    spec.keep_alive = false;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    int ok = 0;
    REQUIRE(runUntilDone(io, [&]() -> asio::awaitable<void> {
      HttpResponse out;
      for (int i = 0; i < 5; ++i) {
        co_await session->perform(get(endpoint, "/ok"), out);
        ok += out.status == 200;
      }
    }));
    CHECK(ok == 5);
    CHECK(server.accepts() == 5);
  });
}

TEST_CASE("POST body and headers arrive intact", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());
    HeaderList headers = {{"X-Test", "forty two"}, {"Content-Type", "application/json"}};

    // Small bodies and one above curl's 64 KB "append to the head" limit.
    for (size_t size : {size_t{17}, size_t{100000}}) {
      std::string body = size == 17 ? R"({"name":"value"})"
                                      "\n"
                                    : std::string(size, 'b');
      REQUIRE(body.size() == size);
      HttpRequest request = get(endpoint, "/echo");
      request.method = "POST";
      request.headers = &headers;
      request.body = body;
      uint64_t read_before = server.bytesRead();

      auto out = performOne(io, *session, request);
      REQUIRE(out.error == TransportError::None);
      CHECK(out.status == 200);
      CHECK(out.body == body);
      CHECK(out.bytes_out == server.bytesRead() - read_before);
      auto [head, received] = server.lastEcho();
      CHECK(head.rfind("POST /echo HTTP/1.1\r\n", 0) == 0);
      CHECK(head.find("\r\nX-Test: forty two") != std::string::npos);
      CHECK(head.find("\r\nContent-Type: application/json") != std::string::npos);
      CHECK(head.find("Expect") == std::string::npos);
      CHECK(received == body);
      auto response_headers = session->lastResponseHeaders();
      CHECK(std::find(response_headers.begin(), response_headers.end(),
                      std::pair<std::string, std::string>("X-Echo", "forty two")) !=
            response_headers.end());
    }
  });
}

TEST_CASE("other methods reach the server with their names", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    // PUT, then DELETE and GET on the same session: nothing of the previous request leaks.
    HttpRequest put = get(endpoint, "/echo");
    put.method = "PUT";
    put.body = "put body";
    REQUIRE(performOne(io, *session, put).status == 200);
    CHECK(server.lastEcho().first.rfind("PUT /echo ", 0) == 0);
    CHECK(server.lastEcho().second == "put body");
    // No type the scenario did not set (curl would call it a form).
    CHECK(server.lastEcho().first.find("Content-Type") == std::string::npos);

    HttpRequest del = get(endpoint, "/echo");
    del.method = "DELETE";
    REQUIRE(performOne(io, *session, del).status == 200);
    CHECK(server.lastEcho().first.rfind("DELETE /echo ", 0) == 0);
    CHECK(server.lastEcho().second.empty());

    REQUIRE(performOne(io, *session, get(endpoint, "/echo")).status == 200);
    CHECK(server.lastEcho().first.rfind("GET /echo ", 0) == 0);
    CHECK(server.lastEcho().first.find("Content-Length") == std::string::npos);

    HttpRequest head = get(endpoint, "/ok");
    head.method = "HEAD";
    auto out = performOne(io, *session, head);
    CHECK(out.status == 200);
    CHECK(out.body.empty());
    CHECK(performOne(io, *session, get(endpoint, "/ok")).body == "hello, stampede");
    CHECK(server.accepts() == 1);
  });
}

TEST_CASE("a 500 is a status, not a transport error", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    auto out = performOne(io, *session, get(endpoint, "/status/500"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 500);
    CHECK(out.body == "status body");
  });
}

TEST_CASE("a connection closed without an answer is Reset", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    auto out = performOne(io, *session, get(endpoint, "/close"));
    CHECK(out.error == TransportError::Reset);
    CHECK(out.status == 0);
    CHECK_FALSE(out.detail.empty());
    // The session recovers on a new connection.
    CHECK(performOne(io, *session, get(endpoint, "/ok")).status == 200);
  });
}

TEST_CASE("nothing listening is ConnectRefused", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(unusedPort());

    auto out = performOne(io, *session, get(endpoint, "/ok"));
    CHECK(out.error == TransportError::ConnectRefused);
    CHECK(out.status == 0);
    CHECK_FALSE(out.detail.empty());
  });
}

TEST_CASE("a slow response is a Timeout soon after the deadline", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    auto started = Clock::now();
    auto out = performOne(io, *session, get(endpoint, "/slow/3000", 300ms));
    auto elapsed = Clock::now() - started;
    CHECK(out.error == TransportError::Timeout);
    CHECK(elapsed >= 290ms);
    CHECK(elapsed < 400ms);
    CHECK(performOne(io, *session, get(endpoint, "/ok")).status == 200);
  });
}

TEST_CASE("cancel() completes a slow request with Cancelled promptly", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto session = client->newSession();
    auto endpoint = endpointAt(server.port());

    asio::steady_timer timer(io, 100ms);
    Clock::time_point cancelled_at;
    timer.async_wait([&](const boost::system::error_code&) {
      cancelled_at = Clock::now();
      session->cancel();
      session->cancel(); // idempotent: one completion
    });
    int completions = 0;
    HttpResponse out;
    REQUIRE(runUntilDone(io, [&]() -> asio::awaitable<void> {
      co_await session->perform(get(endpoint, "/slow/3000"), out);
      ++completions;
    }));
    auto done_at = Clock::now();
    CHECK(out.error == TransportError::Cancelled);
    CHECK(done_at - cancelled_at < 50ms);
    session->cancel(); // nothing in flight: a no-op
    CHECK(performOne(io, *session, get(endpoint, "/ok")).status == 200);
    CHECK(completions == 1);
  });
}

TEST_CASE("200 sessions on one thread each complete 20 requests", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec);
    auto endpoint = endpointAt(server.port());
    constexpr int kSessions = 200; // more than three curl shards of 64
    constexpr int kRequests = 20;

    std::vector<std::unique_ptr<HttpSession>> sessions;
    for (int i = 0; i < kSessions; ++i)
      sessions.push_back(client->newSession());
    int ok = 0;
    int finished = 0;
    for (auto& session : sessions) {
      asio::co_spawn(
          io,
          [&, s = session.get()]() -> asio::awaitable<void> {
            HttpResponse out;
            for (int i = 0; i < kRequests; ++i) {
              co_await s->perform(get(endpoint, "/ok"), out);
              ok += out.status == 200 && out.body == "hello, stampede";
            }
            ++finished;
          },
          asio::detached);
    }
    auto deadline = Clock::now() + 30s;
    while (finished < kSessions && Clock::now() < deadline)
      io.run_one_until(deadline);
    CHECK(finished == kSessions);
    CHECK(ok == kSessions * kRequests);
    CHECK(server.requests() == kSessions * kRequests);
  });
}

// Not part of the contract (a virtual user never outlives its client), but shutdown order in a
// worker is easy to get wrong, and curl's C callbacks would turn that into a crash.
TEST_CASE("curl: sessions and the client can go away with requests in flight", "[http_client]") {
  TestServer server;
  asio::io_context io;
  common::HttpSpec spec;
  auto endpoint = endpointAt(server.port());
  std::unique_ptr<HttpSession> a, b, c;
  HttpResponse out_a, out_b, out_c;
  int completions = 0;
  auto client = makeCurlClient(io, spec);
  a = client->newSession();
  b = client->newSession();
  c = client->newSession();
  for (auto [session, out] :
       {std::pair{a.get(), &out_a}, std::pair{b.get(), &out_b}, std::pair{c.get(), &out_c}}) {
    asio::co_spawn(
        io,
        [&, session = session, out = out]() -> asio::awaitable<void> {
          co_await session->perform(get(endpoint, "/slow/2000"), *out);
          ++completions;
        },
        asio::detached);
  }
  io.run_for(100ms);
  a.reset(); // its perform() never resumes: the coroutine is destroyed instead
  b->cancel();
  client.reset(); // wakes c with Cancelled
  io.run_for(50ms);
  CHECK(completions == 2);
  CHECK(out_b.error == TransportError::Cancelled);
  CHECK(out_c.error == TransportError::Cancelled);
  // A session that outlived its client fails fast instead of touching freed curl state.
  CHECK(performOne(io, *c, get(endpoint, "/ok")).error == TransportError::Cancelled);
}

} // namespace
} // namespace stampede::worker
