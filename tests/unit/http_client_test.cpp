// The HttpClient contract, run against every engine and a small HTTP/1.1 server on 127.0.0.1
// (TLS: a small asio server with certificates made here; HTTP/2: nginx, when installed).
#include "worker/host_resolver.h"
#include "worker/http_client.h"
#include "worker/request_wait.h"
#include "worker/target_policy.h"

#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/zlib/deflate_stream.hpp>
#include <boost/crc.hpp>
#include <catch2/catch.hpp>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace stampede::worker {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace beast = boost::beast;

// Text that compresses well and differs line by line: `size` bytes of it.
std::string sampleText(size_t size) {
  std::string text;
  for (int line = 0; text.size() < size; ++line)
    text += "line " + std::to_string(line) + " of the stampede gzip test, kettle teapot mug\n";
  text.resize(size);
  return text;
}

void appendLittleEndian32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i)
    out.push_back(char((v >> (8 * i)) & 0xff));
}

// One gzip member (RFC 1952) of `text`, with a file name in its header when `name` is given.
std::string gzipMember(std::string_view text, std::string_view name = {}) {
  std::string out = {'\x1f', '\x8b', 8, char(name.empty() ? 0 : 8), 0, 0, 0, 0, 0, 3};
  if (!name.empty()) {
    out += name;
    out.push_back('\0');
  }
  beast::zlib::deflate_stream deflate;
  deflate.reset(6, 15, 8, beast::zlib::Strategy::normal);
  std::string deflated(deflate.upper_bound(text.size()) + 64, '\0');
  beast::zlib::z_params zs;
  zs.next_in = text.data();
  zs.avail_in = text.size();
  zs.next_out = deflated.data();
  zs.avail_out = deflated.size();
  beast::error_code ec;
  deflate.write(zs, beast::zlib::Flush::finish, ec);
  REQUIRE(ec == beast::zlib::error::end_of_stream);
  deflated.resize(zs.total_out);
  out += deflated;
  boost::crc_32_type crc;
  crc.process_bytes(text.data(), text.size());
  appendLittleEndian32(out, crc.checksum());
  appendLittleEndian32(out, uint32_t(text.size()));
  return out;
}

// Routes: /ok, /ok-then-close (answers as keep-alive, then closes), /size/<bytes>, /status/<code>,
// /slow/<ms>, /close (closes without answering), /echo (the request body back, X-Test echoed as
// X-Echo), /gzip/<bytes> (sampleText, gzipped when the request accepts gzip),
// /gzip-chunked/<bytes> (the same, chunked), /gzip-members (two members, the first named),
// /gzip-corrupt, /redirect (302 to /ok), /huge-head/<bytes> (a head of about that size),
// /huge-length (declares 10^12 bytes, sends 3, then nothing), /endless (a chunked body without
// end, until the client goes). Single-threaded poll loop so that a few hundred keep-alive
// connections cost nothing; every connection, byte and request is counted for the tests'
// assertions.
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
  // The head of the last request, whatever its route.
  std::string lastHead() const {
    std::lock_guard lock(mutex_);
    return last_head_;
  }

private:
  struct Conn {
    int fd = -1;
    std::string in;
    std::string out;
    bool close_after_write = false;
    bool endless = false;                 // /endless: chunks follow while the client reads
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

  static std::string chunkedResponse(std::string_view body, std::string_view extra,
                                     size_t chunk_size) {
    std::string r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n";
    r += extra;
    r += "\r\n";
    for (size_t at = 0; at < body.size(); at += chunk_size) {
      auto chunk = body.substr(at, chunk_size);
      char size[16];
      snprintf(size, sizeof size, "%zx", chunk.size());
      r += std::string(size) + "\r\n" + std::string(chunk) + "\r\n";
    }
    r += "0\r\n\r\n";
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
      {
        std::lock_guard lock(mutex_);
        last_head_ = head;
      }
      bool close = strcasecmp(headerValue(head, "Connection").c_str(), "close") == 0;
      const bool accepts_gzip =
          headerValue(head, "Accept-Encoding").find("gzip") != std::string::npos;
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
      } else if (path.rfind("/gzip/", 0) == 0) {
        auto text = sampleText(std::stoul(path.substr(6)));
        if (accepts_gzip)
          reply(response(200, gzipMember(text), close, "Content-Encoding: gzip\r\n"));
        else
          reply(response(200, text, close));
      } else if (path.rfind("/gzip-chunked/", 0) == 0) {
        auto text = sampleText(std::stoul(path.substr(14)));
        reply(chunkedResponse(gzipMember(text), "Content-Encoding: gzip\r\n", 100));
      } else if (path == "/gzip-members") {
        reply(response(200, gzipMember("first member, ", "first.txt") + gzipMember("second"), close,
                       "Content-Encoding: gzip\r\n"));
      } else if (path == "/gzip-corrupt") {
        std::string body = gzipMember(sampleText(1000));
        body[body.size() / 2] ^= 0x55;
        reply(response(200, body, close, "Content-Encoding: gzip\r\n"));
      } else if (path == "/redirect") {
        reply(response(302, "moved", close, "Location: /ok\r\n"));
      } else if (path.rfind("/huge-head/", 0) == 0) {
        const size_t size = std::stoul(path.substr(11));
        std::string r = "HTTP/1.1 200 OK\r\n";
        for (int i = 0; r.size() < size; ++i)
          r += "X-Filler-" + std::to_string(i) + ": " + std::string(100, 'h') + "\r\n";
        reply(r + "Content-Length: 2\r\n\r\nok");
      } else if (path == "/huge-length") {
        reply("HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nabc");
      } else if (path == "/endless") {
        reply("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        c.endless = true;
        return true;
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
        for (int refills = 0; keep; ++refills) {
          if (c.endless && c.out.size() < 65536 && refills < 32)
            c.out += "10000\r\n" + std::string(65536, 'e') + "\r\n";
          if (c.out.empty())
            break;
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
  std::string last_head_;
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

// The server's byte count once it has stopped moving: a response cut short by the client
// (an aborted transfer) may still be draining into the closed connection for a moment.
uint64_t settledBytesWritten(const TestServer& server) {
  uint64_t last = server.bytesWritten();
  for (auto deadline = Clock::now() + 1s; Clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
    const uint64_t now = server.bytesWritten();
    if (now == last)
      break;
    last = now;
  }
  return last;
}

struct Engine {
  const char* name;
  std::unique_ptr<HttpClient> (*make)(asio::io_context&, const common::HttpSpec&,
                                      std::shared_ptr<const TargetPolicy>);
};

const Engine kBeast = {"beast", &makeBeastClient};
const Engine kCurl = {"curl", &makeCurlClient};

// Runs `test` once per engine, each in its own Catch section.
template <class F> void forEachEngine(F&& test) {
  for (const auto& engine : {kBeast, kCurl}) {
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

// A request as a virtual user sends it: start() where the session can (a connection that is
// open), perform() otherwise. So every test of a second request on a session covers both.
asio::awaitable<void> send(HttpSession& session, const HttpRequest& request, HttpResponse& out) {
  RequestWait wait;
  if (session.start(request, out, wait)) {
    co_await wait.suspend();
    wait.rethrowIfFailed();
  } else {
    co_await session.perform(request, out);
  }
}

HttpResponse performOne(asio::io_context& io, HttpSession& session, const HttpRequest& request) {
  HttpResponse out;
  REQUIRE(
      runUntilDone(io, [&]() -> asio::awaitable<void> { co_await send(session, request, out); }));
  return out;
}

// What most tests start with: a client of `engine` on an io_context of its own, and one session.
struct ClientSession {
  explicit ClientSession(const Engine& engine, common::HttpSpec http_spec = {},
                         std::shared_ptr<const TargetPolicy> allow = nullptr)
      : spec(std::move(http_spec)), client(engine.make(io, spec, std::move(allow))),
        session(client->newSession()) {}

  HttpResponse perform(const HttpRequest& request) { return performOne(io, *session, request); }
  // `request` `count` times in a row, in one coroutine: how many got a 200.
  int performRepeatedly(const HttpRequest& request, int count) {
    int ok = 0;
    REQUIRE(runUntilDone(io, [&]() -> asio::awaitable<void> {
      HttpResponse out;
      for (int i = 0; i < count; ++i) {
        co_await send(*session, request, out);
        ok += out.status == 200;
      }
    }));
    return ok;
  }

  asio::io_context io;   // first: destroyed last
  common::HttpSpec spec; // the engines keep a reference to it
  std::unique_ptr<HttpClient> client;
  std::unique_ptr<HttpSession> session;
};

// One request on a client and session made for it alone.
// A response that outlives its session: HttpResponse::body views the session's buffer, which
// dies with the session, so the body is copied and the view points at the copy.
struct OwnedResponse : HttpResponse {
  std::string owned_body;
  explicit OwnedResponse(const HttpResponse& r) : HttpResponse(r), owned_body(r.body) {
    body = owned_body;
  }
  OwnedResponse(const OwnedResponse& o) : OwnedResponse(static_cast<const HttpResponse&>(o)) {}
  OwnedResponse& operator=(const OwnedResponse& o) {
    static_cast<HttpResponse&>(*this) = o;
    owned_body = o.owned_body;
    body = owned_body;
    return *this;
  }
};

OwnedResponse performOnce(const Engine& engine, common::HttpSpec spec, const HttpRequest& request) {
  ClientSession client(engine, std::move(spec));
  return OwnedResponse(client.perform(request));
}

// Starts `body` on every session at once and drives `io` until all have returned or `limit` has
// passed: how many returned.
int runOnEach(asio::io_context& io, const std::vector<std::unique_ptr<HttpSession>>& sessions,
              const std::function<asio::awaitable<void>(HttpSession&)>& body,
              std::chrono::milliseconds limit) {
  int finished = 0;
  for (const auto& session : sessions) {
    asio::co_spawn(
        io,
        [&, s = session.get()]() -> asio::awaitable<void> {
          co_await body(*s);
          ++finished;
        },
        asio::detached);
  }
  auto deadline = Clock::now() + limit;
  while (finished < int(sessions.size()) && Clock::now() < deadline) {
    if (io.stopped())
      io.restart(); // an earlier request may have run it out of work
    io.run_one_until(deadline);
  }
  return finished;
}

// ---- TLS and HTTP/2 fixtures ----

// A certificate and its private key, PEM.
struct KeyPair {
  std::string cert_pem;
  std::string key_pem;
};

// Made in process (EC P-256 keys: quick), once for the whole binary.
struct Pki {
  KeyPair ca;          // a certificate authority
  KeyPair server;      // signed by `ca`, for IP 127.0.0.1 and DNS localhost
  KeyPair client;      // signed by `ca`, for mutual TLS
  KeyPair self_signed; // its own issuer, for DNS other.example only
};

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

std::string toPem(X509* cert, EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (cert)
    PEM_write_bio_X509(bio.get(), cert);
  if (key)
    PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// A certificate for `key`, signed by `issuer_key` (itself when null).
CertPtr makeCert(EVP_PKEY* key, const char* common_name, const char* alt_names, bool is_ca,
                 X509* issuer, EVP_PKEY* issuer_key) {
  static int serial = 1;
  CertPtr cert(X509_new(), &X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial++);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 7 * 24 * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(common_name), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert.get(), cert.get(), nullptr, nullptr, 0);
  auto add = [&](int nid, const char* value) {
    X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    REQUIRE(extension);
    X509_add_ext(cert.get(), extension, -1);
    X509_EXTENSION_free(extension);
  };
  add(NID_basic_constraints, is_ca ? "critical,CA:TRUE" : "CA:FALSE");
  if (is_ca)
    add(NID_key_usage, "critical,keyCertSign,cRLSign");
  add(NID_subject_key_identifier, "hash");
  if (alt_names)
    add(NID_subject_alt_name, alt_names);
  REQUIRE(X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256()) > 0);
  return cert;
}

const Pki& pki() {
  static const Pki made = [] {
    Pki p;
    KeyPtr ca_key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    KeyPtr server_key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    KeyPtr client_key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    KeyPtr self_key(EVP_EC_gen("P-256"), &EVP_PKEY_free);
    REQUIRE((ca_key && server_key && client_key && self_key));
    auto ca = makeCert(ca_key.get(), "stampede test CA", nullptr, true, nullptr, nullptr);
    auto server = makeCert(server_key.get(), "127.0.0.1", "IP:127.0.0.1,DNS:localhost", false,
                           ca.get(), ca_key.get());
    auto client =
        makeCert(client_key.get(), "stampede client", nullptr, false, ca.get(), ca_key.get());
    auto self =
        makeCert(self_key.get(), "other.example", "DNS:other.example", false, nullptr, nullptr);
    p.ca = {toPem(ca.get(), nullptr), toPem(nullptr, ca_key.get())};
    p.server = {toPem(server.get(), nullptr), toPem(nullptr, server_key.get())};
    p.client = {toPem(client.get(), nullptr), toPem(nullptr, client_key.get())};
    p.self_signed = {toPem(self.get(), nullptr), toPem(nullptr, self_key.get())};
    return p;
  }();
  return made;
}

// HTTP/1.1 over TLS on 127.0.0.1, on its own thread: every request gets 200 "hello, tls" on a
// keep-alive connection. With `client_ca`, a client certificate that CA signed is required.
class TlsServer {
public:
  explicit TlsServer(const KeyPair& identity, const std::string* client_ca = nullptr)
      : context_(asio::ssl::context::tls_server), acceptor_(io_) {
    context_.use_certificate_chain(asio::buffer(identity.cert_pem));
    context_.use_private_key(asio::buffer(identity.key_pem), asio::ssl::context::pem);
    if (client_ca) {
      context_.add_certificate_authority(asio::buffer(*client_ca));
      context_.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert);
    }
    asio::ip::tcp::endpoint where(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(where.protocol());
    acceptor_.bind(where);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    asio::co_spawn(io_, accept(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }
  ~TlsServer() {
    io_.stop();
    thread_.join();
  }

  uint16_t port() const { return port_; }
  int handshakes() const { return handshakes_; }
  // The SNI name of the last handshake, "" for none.
  std::string serverName() const {
    std::lock_guard lock(mutex_);
    return server_name_;
  }

private:
  asio::awaitable<void> accept() {
    for (;;) {
      auto socket = co_await acceptor_.async_accept(asio::use_awaitable);
      asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
  }
  asio::awaitable<void> serve(asio::ip::tcp::socket socket) {
    namespace http = beast::http;
    asio::ssl::stream<asio::ip::tcp::socket> stream(std::move(socket), context_);
    beast::error_code ec;
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return;
    ++handshakes_;
    {
      std::lock_guard lock(mutex_);
      const char* name = SSL_get_servername(stream.native_handle(), TLSEXT_NAMETYPE_host_name);
      server_name_ = name ? name : "";
    }
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> request;
      co_await http::async_read(stream, buffer, request,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        co_return;
      http::response<http::string_body> response(http::status::ok, 11);
      response.body() = "hello, tls";
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      co_await http::async_write(stream, response, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !request.keep_alive())
        co_return;
    }
  }

  asio::io_context io_; // first: destroyed last, with the coroutine frames it still holds
  asio::ssl::context context_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<int> handshakes_{0};
  mutable std::mutex mutex_;
  std::string server_name_;
};

// nginx on 127.0.0.1 with gzip on, listening three ways: h2 over TLS (`tls_port`), h2c with
// prior knowledge (`h2c_port`) and HTTP/1.1 (`plain_port`); it serves /text.txt, sampleText of
// kNginxText bytes.
constexpr size_t kNginxText = 50000;

class Nginx {
public:
  explicit Nginx(const KeyPair& identity) {
    const char* env = std::getenv("STAMPEDE_NGINX");
    const std::string binary = env ? env : "/usr/sbin/nginx";
    if (::access(binary.c_str(), X_OK) != 0)
      return;
    installed_ = true;
    // A module left out of the build makes its directives unknown: leave them out too.
    if (FILE* version = ::popen((binary + " -V 2>&1").c_str(), "r")) {
      char chunk[4096];
      while (size_t n = fread(chunk, 1, sizeof chunk, version))
        build_options_.append(chunk, n);
      ::pclose(version);
    }
    char dir_template[] = "/tmp/stampede-unit-nginx-XXXXXX";
    if (!::mkdtemp(dir_template))
      return;
    dir_ = dir_template;
    std::filesystem::create_directories(dir_ + "/html");
    std::filesystem::create_directories(dir_ + "/tmp");
    write("cert.pem", identity.cert_pem);
    write("key.pem", identity.key_pem);
    write("html/text.txt", sampleText(kNginxText));
    for (int attempt = 0; attempt < 5 && !pid_; ++attempt) {
      tls_port = unusedPort();
      h2c_port = unusedPort();
      plain_port = unusedPort();
      write("nginx.conf", config());
      start(binary);
    }
  }
  ~Nginx() {
    if (pid_) {
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }
  bool installed() const { return installed_; }
  bool running() const { return pid_ != 0; }
  std::string errorLog() const {
    std::ifstream in(dir_ + "/error.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // The access log: "$server_protocol $status $request_method $request_uri $connection" lines.
  std::vector<std::string> accessLog() const {
    std::vector<std::string> lines;
    std::ifstream in(dir_ + "/access.log");
    for (std::string line; std::getline(in, line);)
      if (!line.empty())
        lines.push_back(line);
    return lines;
  }

  uint16_t tls_port = 0;
  uint16_t h2c_port = 0;
  uint16_t plain_port = 0;

private:
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << text;
  }
  std::string config() const {
    using Lines = std::initializer_list<std::string>;
    const std::string& d = dir_;
    std::string text;
    if (::geteuid() == 0)
      text += "user root;\n"; // else the workers switch to www-data, who cannot read `d`
    for (const auto& line : Lines{
             "worker_processes 1;",
             "pid " + d + "/nginx.pid;",
             "error_log " + d + "/error.log warn;",
             "events { worker_connections 256; }",
             "http {",
             "  types { text/plain txt; }",
             "  log_format protocol '$server_protocol $status $request_method $request_uri "
             "$connection';",
             "  access_log " + d + "/access.log protocol;",
             "  client_body_temp_path " + d + "/tmp/body;",
             "  proxy_temp_path " + d + "/tmp/proxy;",
         })
      text += line + "\n";
    for (std::string module : {"fastcgi", "uwsgi", "scgi"})
      if (build_options_.find("--without-http_" + module + "_module") == std::string::npos)
        text += "  " + module + "_temp_path " + d + "/tmp/" + module + ";\n";
    for (const auto& line : Lines{
             "  gzip on;",
             "  gzip_min_length 1;",
             "  gzip_types *;",
             "  server {",
             "    listen 127.0.0.1:" + std::to_string(tls_port) + " ssl http2;",
             "    listen 127.0.0.1:" + std::to_string(h2c_port) + " http2;",
             "    listen 127.0.0.1:" + std::to_string(plain_port) + ";",
             "    ssl_certificate " + d + "/cert.pem;",
             "    ssl_certificate_key " + d + "/key.pem;",
             "    root " + d + "/html;",
             "  }",
             "}",
         })
      text += line + "\n";
    return text;
  }

  void start(const std::string& binary) {
    std::vector<std::string> args = {
        binary, "-p",         dir_ + "/", "-e", dir_ + "/error.log", "-c", dir_ + "/nginx.conf",
        "-g",   "daemon off;"};
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0)
      return;
    // Ready once all three ports accept; an exit means a port was taken (try others).
    auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid)
        return;
      if (accepts(tls_port) && accepts(h2c_port) && accepts(plain_port)) {
        pid_ = pid;
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  static bool accepts(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    return ok;
  }

  std::string dir_;
  bool installed_ = false;
  std::string build_options_; // nginx -V
  pid_t pid_ = 0;
};

common::Endpoint httpsEndpointAt(uint16_t port, std::string host = "127.0.0.1") {
  common::Endpoint e;
  e.scheme = "https";
  e.host = std::move(host);
  e.port = port;
  return e;
}

bool oneLine(const std::string& text) {
  return !text.empty() && text.find('\n') == std::string::npos;
}

TEST_CASE("GET returns status, body and wire byte counts", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto out = client.perform(get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 200);
    CHECK(out.body == "hello, stampede");
    CHECK(eventually([&] { return out.bytes_in == server.bytesWritten(); }));
    CHECK(out.bytes_in > 15);
    CHECK(out.bytes_out == server.bytesRead());
    auto headers = client.session->lastResponseHeaders();
    CHECK(std::find(headers.begin(), headers.end(),
                    std::pair<std::string, std::string>("Content-Length", "15")) != headers.end());
  });
}

TEST_CASE("a host name is resolved", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());
    endpoint.host = "localhost"; // may resolve to ::1 first, where nothing listens

    auto out = client.perform(get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 200);
  });
}

TEST_CASE("a body larger than the read buffer arrives whole", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto out = client.perform(get(endpoint, "/size/300000"));
    REQUIRE(out.error == TransportError::None);
    CHECK(out.body == std::string(300000, 'x'));
    CHECK(eventually([&] { return out.bytes_in == server.bytesWritten(); }));
  });
}

TEST_CASE("keep-alive reuses one connection across 100 requests", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    CHECK(client.performRepeatedly(get(endpoint, "/ok"), 100) == 100);
    CHECK(server.accepts() == 1);
  });
}

TEST_CASE("a keep-alive connection the server closed while idle is replaced", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    for (int i = 0; i < 3; ++i) {
      auto out = client.perform(get(endpoint, "/ok-then-close"));
      CHECK(out.error == TransportError::None);
      CHECK(out.status == 200);
      std::this_thread::sleep_for(20ms); // the close reaches the client before the next send
    }
    CHECK(server.accepts() == 3);
  });
}

TEST_CASE("Beast: start() takes a request on an open plain connection, not a new one",
          "[http_client]") {
  TestServer server;
  asio::io_context io;
  common::HttpSpec spec;
  auto client = makeBeastClient(io, spec);
  auto session = client->newSession();
  auto endpoint = endpointAt(server.port());
  const HttpRequest request = get(endpoint, "/ok");
  HttpResponse out;
  RequestWait wait;
  CHECK_FALSE(session->start(request, out, wait)); // no connection yet: perform() connects
  REQUIRE(performOne(io, *session, request).status == 200);
  bool resumed = false;
  REQUIRE(runUntilDone(io, [&]() -> asio::awaitable<void> {
    REQUIRE(session->start(request, out, wait));
    co_await wait.suspend();
    resumed = true;
  }));
  CHECK(resumed);
  CHECK(out.error == TransportError::None);
  CHECK(out.status == 200);
  CHECK(out.body == "hello, stampede");
  CHECK(out.bytes_out > 0);
  CHECK(out.bytes_in > out.body.size());
  CHECK(server.accepts() == 1);
}

TEST_CASE("keep_alive false opens a connection per request", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    common::HttpSpec spec;
    spec.keep_alive = false;
    ClientSession client(engine, spec);
    auto endpoint = endpointAt(server.port());

    CHECK(client.performRepeatedly(get(endpoint, "/ok"), 5) == 5);
    CHECK(server.accepts() == 5);
    CHECK(server.lastHead().find("\r\nConnection: close") != std::string::npos);
  });
}

TEST_CASE("POST body and headers arrive intact", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
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

      auto out = client.perform(request);
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
      auto response_headers = client.session->lastResponseHeaders();
      CHECK(std::find(response_headers.begin(), response_headers.end(),
                      std::pair<std::string, std::string>("X-Echo", "forty two")) !=
            response_headers.end());
    }
  });
}

TEST_CASE("other methods reach the server with their names", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    // PUT, then DELETE and GET on the same session: nothing of the previous request leaks.
    HttpRequest put = get(endpoint, "/echo");
    put.method = "PUT";
    put.body = "put body";
    REQUIRE(client.perform(put).status == 200);
    CHECK(server.lastEcho().first.rfind("PUT /echo ", 0) == 0);
    CHECK(server.lastEcho().second == "put body");
    // No type the scenario did not set (curl would call it a form).
    CHECK(server.lastEcho().first.find("Content-Type") == std::string::npos);

    HttpRequest del = get(endpoint, "/echo");
    del.method = "DELETE";
    REQUIRE(client.perform(del).status == 200);
    CHECK(server.lastEcho().first.rfind("DELETE /echo ", 0) == 0);
    CHECK(server.lastEcho().second.empty());

    REQUIRE(client.perform(get(endpoint, "/echo")).status == 200);
    CHECK(server.lastEcho().first.rfind("GET /echo ", 0) == 0);
    CHECK(server.lastEcho().first.find("Content-Length") == std::string::npos);

    HttpRequest head = get(endpoint, "/ok");
    head.method = "HEAD";
    auto out = client.perform(head);
    CHECK(out.status == 200);
    CHECK(out.body.empty());
    CHECK(client.perform(get(endpoint, "/ok")).body == "hello, stampede");
    CHECK(server.accepts() == 1);
  });
}

TEST_CASE("a 500 is a status, not a transport error", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto out = client.perform(get(endpoint, "/status/500"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 500);
    CHECK(out.body == "status body");
  });
}

TEST_CASE("a connection closed without an answer is Reset", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto out = client.perform(get(endpoint, "/close"));
    CHECK(out.error == TransportError::Reset);
    CHECK(out.status == 0);
    CHECK_FALSE(out.detail.empty());
    // The session recovers on a new connection.
    CHECK(client.perform(get(endpoint, "/ok")).status == 200);
  });
}

TEST_CASE("nothing listening is ConnectRefused", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    ClientSession client(engine);
    auto endpoint = endpointAt(unusedPort());

    auto out = client.perform(get(endpoint, "/ok"));
    CHECK(out.error == TransportError::ConnectRefused);
    CHECK(out.status == 0);
    CHECK_FALSE(out.detail.empty());
  });
}

// Takes every descriptor this process may still open, under a soft limit lowered for the
// purpose; gives them back and restores the limit when destroyed.
class DescriptorsExhausted {
public:
  DescriptorsExhausted() {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit low = saved_;
    low.rlim_cur = std::min<rlim_t>(saved_.rlim_cur, 1024);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
    for (;;) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0)
        break;
      held_.push_back(fd);
    }
  }
  ~DescriptorsExhausted() {
    for (int fd : held_)
      ::close(fd);
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  DescriptorsExhausted(const DescriptorsExhausted&) = delete;
  DescriptorsExhausted& operator=(const DescriptorsExhausted&) = delete;

private:
  rlimit saved_{};
  std::vector<int> held_;
};

TEST_CASE("no descriptor left to connect with is the generator's error, not the target's",
          "[http_client]") {
  forEachEngine([](const Engine& engine) {
    ClientSession client(engine);
    auto endpoint = endpointAt(unusedPort());
    // Once with descriptors: the engine's own (event loop, timers) exist before they run out.
    CHECK(client.perform(get(endpoint, "/ok")).error == TransportError::ConnectRefused);

    HttpResponse out;
    {
      DescriptorsExhausted exhausted;
      out = client.perform(get(endpoint, "/ok"));
    }
    CHECK(out.error == TransportError::GeneratorFdExhausted);
    CHECK(std::string(errorKindName(out.error)) == "generator_fd_exhausted");
    CHECK(out.status == 0);
  });
}

TEST_CASE("a slow response is a Timeout soon after the deadline", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto started = Clock::now();
    auto out = client.perform(get(endpoint, "/slow/3000", 300ms));
    auto elapsed = Clock::now() - started;
    CHECK(out.error == TransportError::Timeout);
    CHECK(elapsed >= 290ms);
    CHECK(elapsed < 400ms);
    CHECK(client.perform(get(endpoint, "/ok")).status == 200);
  });
}

TEST_CASE("cancel() completes a slow request with Cancelled promptly", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    asio::steady_timer timer(client.io, 100ms);
    Clock::time_point cancelled_at;
    timer.async_wait([&](const boost::system::error_code&) {
      cancelled_at = Clock::now();
      client.session->cancel();
      client.session->cancel(); // idempotent: one completion
    });
    int completions = 0;
    HttpResponse out;
    REQUIRE(runUntilDone(client.io, [&]() -> asio::awaitable<void> {
      co_await send(*client.session, get(endpoint, "/slow/3000"), out);
      ++completions;
    }));
    auto done_at = Clock::now();
    CHECK(out.error == TransportError::Cancelled);
    CHECK(done_at - cancelled_at < 50ms);
    client.session->cancel(); // nothing in flight: a no-op
    CHECK(client.perform(get(endpoint, "/ok")).status == 200);
    CHECK(completions == 1);
  });
}

TEST_CASE("200 sessions on one thread each complete 20 requests", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec, nullptr);
    auto endpoint = endpointAt(server.port());
    constexpr int kSessions = 200; // more than three curl shards of 64
    constexpr int kRequests = 20;

    std::vector<std::unique_ptr<HttpSession>> sessions;
    for (int i = 0; i < kSessions; ++i)
      sessions.push_back(client->newSession());
    int ok = 0;
    int finished = runOnEach(
        io, sessions,
        [&](HttpSession& s) -> asio::awaitable<void> {
          HttpResponse out;
          for (int i = 0; i < kRequests; ++i) {
            co_await send(s, get(endpoint, "/ok"), out);
            ok += out.status == 200 && out.body == "hello, stampede";
          }
        },
        30s);
    CHECK(finished == kSessions);
    CHECK(ok == kSessions * kRequests);
    CHECK(server.requests() == kSessions * kRequests);
  });
}

TEST_CASE("sessions of one thread sending large bodies at once each deliver their own",
          "[http_client]") {
  // Bodies far over a socket's send buffer: each send is partial and finishes asynchronously
  // while the other sessions serialise and send theirs on the same thread. No session's
  // request may carry bytes of another's.
  forEachEngine([](const Engine& engine) {
    TestServer server;
    asio::io_context io;
    common::HttpSpec spec;
    auto client = engine.make(io, spec, nullptr);
    auto endpoint = endpointAt(server.port());
    constexpr int kSessions = 6;
    constexpr size_t kBodyBytes = 4 << 20;

    std::vector<std::unique_ptr<HttpSession>> sessions;
    std::vector<std::string> bodies;
    for (int i = 0; i < kSessions; ++i) {
      sessions.push_back(client->newSession());
      bodies.emplace_back(kBodyBytes, char('a' + i));
    }
    int intact = 0;
    int finished = runOnEach(
        io, sessions,
        [&](HttpSession& s) -> asio::awaitable<void> {
          size_t index = 0;
          while (sessions[index].get() != &s)
            ++index;
          HttpRequest request = get(endpoint, "/echo");
          request.method = "POST";
          request.body = bodies[index];
          HttpResponse out;
          co_await send(s, request, out);
          intact += out.error == TransportError::None && out.status == 200 &&
                    out.body == bodies[index] && out.bytes_out > kBodyBytes;
        },
        60s);
    CHECK(finished == kSessions);
    CHECK(intact == kSessions);
  });
}

TEST_CASE("header() finds the last response's first field of a name, in any case",
          "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());
    HeaderList headers = {{"X-Test", "forty two"}};

    CHECK_FALSE(client.session->header("Content-Length")); // no response yet
    HttpRequest request = get(endpoint, "/echo");
    request.headers = &headers;
    REQUIRE(client.perform(request).status == 200);
    CHECK(client.session->header("x-echo") == std::optional<std::string_view>("forty two"));
    CHECK(client.session->header("X-ECHO") == std::optional<std::string_view>("forty two"));
    CHECK(client.session->header("content-type") == std::optional<std::string_view>("text/plain"));
    CHECK(client.session->header("Content-Length") == std::optional<std::string_view>("0"));
    CHECK_FALSE(client.session->header("X-Missing"));
    CHECK_FALSE(client.session->header("X-Ech"));

    // The next response's fields replace the last one's.
    REQUIRE(client.perform(get(endpoint, "/status/503")).status == 503);
    CHECK_FALSE(client.session->header("X-Echo"));
    CHECK(client.session->header("content-length") == std::optional<std::string_view>("11"));
    // Split over reads (a body larger than one read): the same.
    REQUIRE(client.perform(get(endpoint, "/size/300000")).status == 200);
    CHECK(client.session->header("Content-Length") == std::optional<std::string_view>("300000"));
    // A request that got no response has no fields.
    REQUIRE(client.perform(get(endpoint, "/close")).error == TransportError::Reset);
    CHECK_FALSE(client.session->header("Content-Length"));
  });
}

TEST_CASE("every method goes out as written, HEAD reads no body", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    for (std::string method : {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "GET"}) {
      INFO(method);
      const bool with_body = method == "POST" || method == "PUT" || method == "PATCH";
      HttpRequest request = get(endpoint, "/echo");
      request.method = method;
      if (with_body)
        request.body = "payload";
      auto out = client.perform(request);
      REQUIRE(out.error == TransportError::None);
      CHECK(out.status == 200);
      auto [head, body] = server.lastEcho();
      CHECK(head.rfind(method + " /echo HTTP/1.1\r\n", 0) == 0);
      CHECK(body == (with_body ? "payload" : ""));
      if (method == "HEAD") {
        CHECK(out.body.empty());
        CHECK(client.session->header("Content-Length") == std::optional<std::string_view>("0"));
      } else {
        CHECK(out.body == body);
      }
      if (method == "OPTIONS" || method == "GET" || method == "HEAD")
        CHECK(head.find("Content-Length") == std::string::npos);
    }
    // A HEAD answered with a Content-Length but no body leaves the connection in step.
    HttpRequest head = get(endpoint, "/size/5000");
    head.method = "HEAD";
    auto out = client.perform(head);
    CHECK(out.status == 200);
    CHECK(out.body.empty());
    CHECK(client.session->header("content-length") == std::optional<std::string_view>("5000"));
    CHECK(client.perform(get(endpoint, "/ok")).body == "hello, stampede");
    CHECK(server.accepts() == 1);
  });
}

TEST_CASE("gzip bodies are decoded; bytes_in counts them as they came", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    uint64_t written = server.bytesWritten();
    auto out = client.perform(get(endpoint, "/gzip/100000"));
    REQUIRE(out.error == TransportError::None);
    CHECK(out.status == 200);
    CHECK(out.body == sampleText(100000));
    CHECK(server.lastHead().find("\r\nAccept-Encoding: gzip") != std::string::npos);
    CHECK(client.session->header("content-encoding") == std::optional<std::string_view>("gzip"));
    CHECK(eventually([&] { return out.bytes_in == server.bytesWritten() - written; }));
    CHECK(out.bytes_in < 100000 / 5);

    // Many in a row: the decoder's state is reused, nothing of one body reaches the next.
    for (size_t size : {size_t{1}, size_t{70000}, size_t{10}, size_t{0}, size_t{3000}}) {
      INFO(size);
      auto again = client.perform(get(endpoint, "/gzip/" + std::to_string(size)));
      CHECK(again.status == 200);
      CHECK(again.body == sampleText(size));
    }

    // Chunked, as nginx sends gzip: the body decoded, bytes_in the compressed size or more.
    written = server.bytesWritten();
    auto chunked = client.perform(get(endpoint, "/gzip-chunked/50000"));
    REQUIRE(chunked.error == TransportError::None);
    CHECK(chunked.body == sampleText(50000));
    CHECK(chunked.bytes_in < 50000 / 5);
    CHECK(eventually([&] { return server.bytesWritten() - written >= chunked.bytes_in; }));

    // Members back to back are one body (RFC 1952, 2.2); curl 7.88 stops after the first and
    // fails the transfer (no server we know of sends more than one).
    auto members = client.perform(get(endpoint, "/gzip-members"));
    INFO(members.detail);
    if (std::string_view(engine.name) == "beast")
      CHECK(members.body == "first member, second");
    else
      CHECK(members.error == TransportError::Protocol);
  });
}

TEST_CASE("the scenario's own Accept-Encoding is the only one sent", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    HeaderList identity = {{"accept-encoding", "identity"}};
    HttpRequest plain = get(endpoint, "/gzip/1000");
    plain.headers = &identity;
    auto raw = client.perform(plain);
    CHECK(raw.body == sampleText(1000));
    CHECK_FALSE(client.session->header("Content-Encoding"));
    auto head = server.lastHead();
    CHECK(head.find("\r\naccept-encoding: identity") != std::string::npos);
    CHECK(head.find("Accept-Encoding") == std::string::npos);
  });
}

TEST_CASE("a corrupt gzip body is a protocol error, and the session goes on", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto corrupt = client.perform(get(endpoint, "/gzip-corrupt"));
    CHECK(corrupt.error == TransportError::Protocol);
    CHECK(corrupt.status == 0);
    CHECK(oneLine(corrupt.detail));
    CHECK(client.perform(get(endpoint, "/ok")).body == "hello, stampede");
  });
}

TEST_CASE("a redirect is returned as it is, not followed", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    common::HttpSpec spec;
    spec.follow_redirects = true; // the engine's business, not the client's
    ClientSession client(engine, spec);
    auto endpoint = endpointAt(server.port());

    auto out = client.perform(get(endpoint, "/redirect"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 302);
    CHECK(out.body == "moved");
    CHECK(client.session->header("location") == std::optional<std::string_view>("/ok"));
    CHECK(server.requests() == 1);
  });
}

TEST_CASE("HTTP/1.1 responses report http_version 11", "[http_client]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    common::HttpSpec spec;
    spec.version = common::HttpSpec::Version::Http2; // the Beast engine speaks HTTP/1.1 anyway
    ClientSession client(engine, spec);
    auto endpoint = endpointAt(server.port());
    if (std::string_view(engine.name) == "curl")
      return; // h2c with prior knowledge does not speak to an HTTP/1.1 server: see [nginx]
    auto out = client.perform(get(endpoint, "/ok"));
    CHECK(out.status == 200);
    CHECK(out.http_version == 11);
  });
  TestServer server;
  auto endpoint = endpointAt(server.port());
  CHECK(performOnce(kCurl, {}, get(endpoint, "/ok")).http_version == 11);
}

// Sets an environment variable (or unsets it, with nullopt) for one scope.
class ScopedEnv {
public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name))
      old_ = old;
    if (value)
      ::setenv(name, value->c_str(), 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

private:
  const char* name_;
  std::optional<std::string> old_;
};

// The curl engine tells curl "no proxy" when the environment names none (curl would read the
// environment per transfer): one that does must still carry the requests.
TEST_CASE("curl: a proxy named in the environment carries the requests", "[http_client]") {
  TestServer proxy;
  const uint16_t target_port = unusedPort(); // nothing listens there: only the proxy answers
  ScopedEnv http_proxy("http_proxy", "http://127.0.0.1:" + std::to_string(proxy.port()));
  ScopedEnv no_proxy("no_proxy", std::nullopt);
  ScopedEnv no_proxy_upper("NO_PROXY", std::nullopt);
  auto endpoint = endpointAt(target_port);
  auto out = performOnce(kCurl, {}, get(endpoint, "/ok"));
  CHECK(out.error == TransportError::None);
  CHECK(proxy.requests() == 1);
  const std::string request_line =
      "GET http://127.0.0.1:" + std::to_string(target_port) + "/ok HTTP/1.1";
  CHECK(proxy.lastHead().substr(0, request_line.size()) == request_line);
}

TEST_CASE("TLS: a CA given as PEM is trusted, and names are checked", "[http_client][tls]") {
  forEachEngine([](const Engine& engine) {
    TlsServer server(pki().server);
    common::HttpSpec spec;
    spec.tls.ca_pem = pki().ca.cert_pem;
    ClientSession client(engine, spec);
    auto endpoint = httpsEndpointAt(server.port());

    for (int i = 0; i < 3; ++i) {
      auto out = client.perform(get(endpoint, "/ok"));
      REQUIRE(out.error == TransportError::None);
      CHECK(out.status == 200);
      CHECK(out.body == "hello, tls");
    }
    CHECK(server.handshakes() == 1);    // kept alive
    CHECK(server.serverName().empty()); // no SNI for an address

    auto by_name = httpsEndpointAt(server.port(), "localhost");
    auto named = client.client->newSession();
    auto out = performOne(client.io, *named, get(by_name, "/ok"));
    CHECK(out.status == 200);
    CHECK(server.serverName() == "localhost");

    // The system's authorities do not know ours.
    auto failed = performOnce(engine, {}, get(endpoint, "/ok"));
    CHECK(failed.error == TransportError::Tls);
    CHECK(failed.status == 0);
    CHECK(oneLine(failed.detail));
    INFO(failed.detail);
    CHECK(failed.detail.find("certificate") != std::string::npos);
  });
}

TEST_CASE("TLS: verify false accepts a self-signed certificate for another name",
          "[http_client][tls]") {
  forEachEngine([](const Engine& engine) {
    TlsServer server(pki().self_signed); // for other.example, not 127.0.0.1
    auto endpoint = httpsEndpointAt(server.port());
    common::HttpSpec unverified;
    unverified.tls.verify = false;
    auto out = performOnce(engine, unverified, get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.body == "hello, tls");

    // Trusted, but not for this name.
    common::HttpSpec trusted;
    trusted.tls.ca_pem = pki().self_signed.cert_pem;
    out = performOnce(engine, trusted, get(endpoint, "/ok"));
    CHECK(out.error == TransportError::Tls);
    CHECK(oneLine(out.detail));
  });
}

TEST_CASE("TLS: a client certificate from PEM is presented", "[http_client][tls]") {
  forEachEngine([](const Engine& engine) {
    TlsServer server(pki().server, &pki().ca.cert_pem);
    auto endpoint = httpsEndpointAt(server.port());
    common::HttpSpec spec;
    spec.tls.ca_pem = pki().ca.cert_pem;
    common::HttpSpec with_cert = spec;
    with_cert.tls.cert_pem = pki().client.cert_pem;
    with_cert.tls.key_pem = pki().client.key_pem;
    auto out = performOnce(engine, with_cert, get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.body == "hello, tls");

    out = performOnce(engine, spec, get(endpoint, "/ok"));
    CHECK(out.error != TransportError::None); // TLS 1.3 may tell only after the handshake
    CHECK(out.status == 0);
  });
}

TEST_CASE("TLS: an unusable CA PEM fails TLS requests with a one-line reason",
          "[http_client][tls]") {
  forEachEngine([](const Engine& engine) {
    TlsServer server(pki().server);
    common::HttpSpec spec;
    spec.tls.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
    ClientSession client(engine, spec);
    auto out = client.perform(get(httpsEndpointAt(server.port()), "/ok"));
    CHECK(out.error == TransportError::Tls);
    CHECK(oneLine(out.detail));
    // Plain HTTP is not affected.
    TestServer plain;
    CHECK(client.perform(get(endpointAt(plain.port()), "/ok")).status == 200);
  });
}

TEST_CASE("HTTP/2 on the curl engine: h2 via ALPN and h2c, against nginx", "[http_client][nginx]") {
  Nginx nginx(pki().server);
  if (!nginx.installed()) {
    WARN("nginx not installed: HTTP/2 not tested");
    return;
  }
  INFO(nginx.errorLog());
  REQUIRE(nginx.running());
  const auto text = sampleText(kNginxText);
  common::HttpSpec spec;
  spec.engine = common::HttpSpec::Engine::Curl;
  spec.version = common::HttpSpec::Version::Http2;
  spec.tls.ca_pem = pki().ca.cert_pem;
  ClientSession client(kCurl, spec);

  auto h2 = httpsEndpointAt(nginx.tls_port);
  auto h2c = endpointAt(nginx.h2c_port);
  for (const auto* endpoint : {&h2, &h2c, &h2}) {
    INFO(endpoint->scheme);
    auto out = client.perform(get(*endpoint, "/text.txt"));
    REQUIRE(out.error == TransportError::None);
    CHECK(out.status == 200);
    CHECK(out.http_version == 20);
    CHECK(out.body == text); // gzipped by nginx, decoded by curl
    CHECK(client.session->header("Content-Encoding") == std::optional<std::string_view>("gzip"));
    CHECK(out.bytes_in < kNginxText / 4);
  }

  // version "1.1" keeps curl on HTTP/1.1 even where ALPN offers h2.
  spec.version = common::HttpSpec::Version::Http1;
  auto out = performOnce(kCurl, spec, get(h2, "/text.txt"));
  CHECK(out.status == 200);
  CHECK(out.http_version == 11);
  CHECK(out.body == text);

  // The Beast engine decodes what nginx's zlib made (chunked), over TLS too.
  ClientSession beast(kBeast, spec);
  for (auto endpoint : {endpointAt(nginx.plain_port), h2}) {
    auto got = beast.perform(get(endpoint, "/text.txt"));
    REQUIRE(got.error == TransportError::None);
    CHECK(got.http_version == 11);
    CHECK(got.body == text);
    CHECK(got.bytes_in < kNginxText / 4);
  }

  std::vector<std::string> log;
  REQUIRE(eventually([&] { return (log = nginx.accessLog()).size() == 6; }));
  auto protocol = [](const std::string& line) { return line.substr(0, line.find(" /") + 10); };
  CHECK(protocol(log[0]) == "HTTP/2.0 200 GET /text.txt");
  CHECK(protocol(log[1]) == "HTTP/2.0 200 GET /text.txt");
  CHECK(protocol(log[2]) == "HTTP/2.0 200 GET /text.txt");
  CHECK(protocol(log[3]) == "HTTP/1.1 200 GET /text.txt");
  CHECK(protocol(log[4]) == "HTTP/1.1 200 GET /text.txt");
  CHECK(protocol(log[5]) == "HTTP/1.1 200 GET /text.txt");
}

TEST_CASE("HTTP/2 on the curl engine: each session has a connection of its own",
          "[http_client][nginx]") {
  Nginx nginx(pki().server);
  if (!nginx.installed())
    return; // said by the test above
  INFO(nginx.errorLog());
  REQUIRE(nginx.running());
  asio::io_context io;
  common::HttpSpec spec;
  spec.version = common::HttpSpec::Version::Http2;
  spec.tls.ca_pem = pki().ca.cert_pem;
  auto client = makeCurlClient(io, spec);
  auto endpoint = httpsEndpointAt(nginx.tls_port);
  std::vector<std::unique_ptr<HttpSession>> sessions;
  for (int i = 0; i < 3; ++i)
    sessions.push_back(client->newSession());
  // One connection is up and idle; then three sessions ask at once. Multiplexed, all three
  // would go over that one.
  REQUIRE(performOne(io, *sessions[0], get(endpoint, "/text.txt")).http_version == 20);
  int ok = 0;
  runOnEach(
      io, sessions,
      [&](HttpSession& s) -> asio::awaitable<void> {
        HttpResponse out;
        co_await s.perform(get(endpoint, "/text.txt"), out);
        ok += out.status == 200 && out.http_version == 20;
      },
      20s);
  CHECK(ok == 3);
  std::vector<std::string> log;
  REQUIRE(eventually([&] { return (log = nginx.accessLog()).size() == 4; }));
  std::set<std::string> connections;
  for (size_t i = 1; i < log.size(); ++i)
    connections.insert(log[i].substr(log[i].rfind(' ') + 1));
  CHECK(connections.size() == 3);
}

TEST_CASE("HTTP/2 on the curl engine: h2c serves request after request", "[http_client][nginx]") {
  Nginx nginx(pki().server);
  if (!nginx.installed())
    return; // said by the test above
  INFO(nginx.errorLog());
  REQUIRE(nginx.running());
  common::HttpSpec spec;
  spec.version = common::HttpSpec::Version::Http2;
  ClientSession client(kCurl, spec);
  auto endpoint = endpointAt(nginx.h2c_port);
  for (int i = 0; i < 5; ++i) {
    auto out = client.perform(get(endpoint, "/text.txt"));
    INFO(out.detail);
    CHECK(out.status == 200);
    CHECK(out.http_version == 20);
  }
  std::vector<std::string> log;
  REQUIRE(eventually([&] { return (log = nginx.accessLog()).size() == 5; }));
  for (const auto& line : log)
    CHECK(line.rfind("HTTP/2.0 200 GET /text.txt ", 0) == 0);
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

// The process's resident set now, in bytes (Linux).
uint64_t residentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stoull(line.substr(6)) * 1024;
  return 0;
}

TEST_CASE("a kept body over http.max_body is BodyTooLarge; one nobody reads is only counted",
          "[http_client][max_body]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    common::HttpSpec spec;
    spec.max_body = 100000;
    ClientSession client(engine, spec);
    auto endpoint = endpointAt(server.port());

    auto kept = client.perform(get(endpoint, "/size/300000"));
    CHECK(kept.error == TransportError::BodyTooLarge);
    CHECK(std::string(errorKindName(kept.error)) == "body_too_large");
    CHECK(kept.detail.find("http.max_body (100000 bytes)") != std::string::npos);
    CHECK(client.perform(get(endpoint, "/size/100000")).body.size() == 100000); // at the cap

    // Nothing reads it: the first KiB is kept, every byte counted.
    HttpRequest unread = get(endpoint, "/size/300000");
    unread.keep_body = false;
    const uint64_t written_before = settledBytesWritten(server);
    auto counted = client.perform(unread);
    CHECK(counted.error == TransportError::None);
    CHECK(counted.status == 200);
    CHECK(counted.body == std::string(kBodyExcerptBytes, 'x'));
    CHECK(eventually([&] { return counted.bytes_in == server.bytesWritten() - written_before; }));
    CHECK(counted.bytes_in > 300000);

    // Chunked, and gzip: the cap holds for the body as decoded too; unread, the first KiB is
    // decoded for the excerpt.
    CHECK(client.perform(get(endpoint, "/size/300000")).error == TransportError::BodyTooLarge);
    CHECK(client.perform(get(endpoint, "/gzip-chunked/300000")).error ==
          TransportError::BodyTooLarge);
    HttpRequest unread_gzip = get(endpoint, "/gzip/300000");
    unread_gzip.keep_body = false;
    auto gzip = client.perform(unread_gzip);
    CHECK(gzip.error == TransportError::None);
    CHECK(gzip.body == sampleText(kBodyExcerptBytes));
    // The session goes on.
    CHECK(client.perform(get(endpoint, "/ok")).body == "hello, stampede");
  });
}

TEST_CASE("a gzip body nobody reads is not inflated: corrupt, it passes",
          "[http_client][max_body]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    HttpRequest unread = get(endpoint, "/gzip-corrupt");
    unread.keep_body = false;
    auto out = client.perform(unread);
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 200);
    CHECK(client.perform(get(endpoint, "/gzip-corrupt")).error == TransportError::Protocol);
  });
}

TEST_CASE("a declared Content-Length over the cap fails at once; unread, it runs to the timeout",
          "[http_client][max_body]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine); // the default cap, 64 MiB
    auto endpoint = endpointAt(server.port());

    auto started = Clock::now();
    auto kept = client.perform(get(endpoint, "/huge-length", 3s));
    CHECK(kept.error == TransportError::BodyTooLarge);
    CHECK(Clock::now() - started < 1s);

    HttpRequest unread = get(endpoint, "/huge-length", 300ms);
    unread.keep_body = false;
    started = Clock::now();
    auto counted = client.perform(unread);
    CHECK(counted.error == TransportError::Timeout);
    CHECK(Clock::now() - started < 1s);
    CHECK(client.perform(get(endpoint, "/ok")).status == 200);
  });
}

TEST_CASE("a response head over 64 KiB is Protocol on both engines", "[http_client][max_body]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());

    auto fits = client.perform(get(endpoint, "/huge-head/40000"));
    CHECK(fits.error == TransportError::None);
    CHECK(fits.body == "ok");
    for (const char* target : {"/huge-head/70000", "/huge-head/1000000"}) {
      INFO(target);
      auto out = client.perform(get(endpoint, target));
      CHECK(out.error == TransportError::Protocol);
      CHECK(out.status == 0);
    }
    CHECK(client.perform(get(endpoint, "/ok")).status == 200);
  });
}

TEST_CASE("an endless body nobody reads is counted in bounded memory until the timeout",
          "[http_client][max_body]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine);
    auto endpoint = endpointAt(server.port());
    CHECK(client.perform(get(endpoint, "/ok")).status == 200); // buffers and connection made

    HttpRequest unread = get(endpoint, "/endless", 2500ms);
    unread.keep_body = false;
    const uint64_t resident_before = residentBytes();
    auto out = client.perform(unread);
    const uint64_t grown = residentBytes() - std::min(residentBytes(), resident_before);
    CHECK(out.error == TransportError::Timeout);
    CHECK(out.bytes_in > common::kDefaultMaxBody); // streamed past http.max_body's default
    CHECK(grown < 16 * 1024 * 1024);

    // Read by the run, the same body stops at the cap.
    common::HttpSpec small;
    small.max_body = 1024 * 1024;
    ClientSession capped(engine, small);
    auto started = Clock::now();
    auto kept = capped.perform(get(endpoint, "/endless", 5s));
    CHECK(kept.error == TransportError::BodyTooLarge);
    CHECK(Clock::now() - started < 2s);
  });
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

std::shared_ptr<const TargetPolicy> allowOnly(std::string_view list) {
  return std::make_shared<const TargetPolicy>(TargetPolicy::parse(list).resolved());
}

TEST_CASE("--allow-target: an address outside is target_not_allowed and never connected",
          "[http_client][allow_target]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine, {}, allowOnly("127.0.0.2/32"));
    auto endpoint = endpointAt(server.port());

    auto out = client.perform(get(endpoint, "/ok"));
    CHECK(out.error == TransportError::TargetNotAllowed);
    CHECK(std::string(errorKindName(out.error)) == "target_not_allowed");
    CHECK(out.status == 0);
    CHECK(out.detail == "127.0.0.1 is outside --allow-target 127.0.0.2/32");
    CHECK(out.bytes_out == 0);

    // A name: every address it resolves to is judged (localhost: 127.0.0.1, maybe ::1).
    endpoint.host = "localhost";
    out = client.perform(get(endpoint, "/ok"));
    CHECK(out.error == TransportError::TargetNotAllowed);
    CHECK(out.detail.rfind("localhost: ", 0) == 0);
    std::this_thread::sleep_for(50ms);
    CHECK(server.accepts() == 0);
  });
}

TEST_CASE("--allow-target: a name connects only to its allowed addresses",
          "[http_client][allow_target]") {
  forEachEngine([](const Engine& engine) {
    TestServer server;
    ClientSession client(engine, {}, allowOnly("127.0.0.1/32"));
    auto endpoint = endpointAt(server.port());
    endpoint.host = "localhost"; // ::1, if it comes first, is skipped, not an error

    auto out = client.perform(get(endpoint, "/ok"));
    CHECK(out.error == TransportError::None);
    CHECK(out.status == 200);
    // The same session, then a host outside (a redirect's, a templated one): refused, and the
    // open connection to the allowed one is not used for it.
    auto elsewhere = endpointAt(server.port());
    elsewhere.host = "127.0.0.2";
    out = client.perform(get(elsewhere, "/ok"));
    CHECK(out.error == TransportError::TargetNotAllowed);
    CHECK(client.perform(get(endpoint, "/ok")).status == 200);
    CHECK(server.requests() == 2);
  });
}

} // namespace
} // namespace stampede::worker
