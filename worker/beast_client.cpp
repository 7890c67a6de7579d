// HTTP/1.1 on Boost.Beast: one keep-alive connection per session, the request serialised into a
// reused string, the response read into a reused buffer, so the steady state allocates nothing
// per request.
//
// The hot path is one coroutine frame and one asynchronous operation per request: the request
// goes out with a direct non-blocking send (the socket buffer is empty on a keep-alive
// connection), and only the response is awaited. The common response (HTTP/1.1, Content-Length,
// all in one read) is parsed in one pass and left in place (parseSimpleResponse); anything else
// goes to basic_parser. No timer is armed per request: one timer per client sweeps the
// deadlines of the requests in flight (Sweeper).
#include "worker/http_client.h"

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

namespace stampede::worker {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;
using SteadyClock = std::chrono::steady_clock;
using namespace std::string_view_literals;
// The io_context's own executor, not the type-erased any_io_executor: cheaper per operation.
using Socket = asio::basic_stream_socket<tcp, asio::io_context::executor_type>;
using TlsStream = asio::ssl::stream<Socket>;

constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;
constexpr size_t kMaxReadBytes = 64 * 1024; // per read, as http::async_read
constexpr size_t kMaxHeadBytes = 8 * 1024;  // basic_parser's default header_limit
constexpr std::string_view kUserAgent = "stampede/" STAMPEDE_VERSION;
// Timeouts are enforced to within a tenth of the shortest one, at most this late.
constexpr std::chrono::milliseconds kMaxSweepPeriod{100};
constexpr std::chrono::milliseconds kMinSweepPeriod{1};

// Parses one response into buffers owned by the session; emplaced fresh for every response
// (construction is cheap and allocation-free). Header fields are not copied one by one: the
// session keeps the raw header block and parses it again only when asked (a failed request).
// Trailer fields (rare) are copied.
class ResponseParser final : public http::basic_parser<false> {
public:
  ResponseParser(std::string& body, HeaderList& trailers) : body_(body), trailers_(trailers) {
    body_.clear();
    body_limit(kMaxBodyBytes);
    eager(true); // as http::async_read: parse the body in the same put() as the header
  }
  int status() const { return status_; }

private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, error_code&) override { status_ = code; }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    if (is_header_done())
      trailers_.emplace_back(std::string(name), std::string(value));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    if (length && *length <= kMaxBodyBytes)
      body_.reserve(*length);
  }
  size_t on_body_impl(beast::string_view data, error_code&) override {
    body_.append(data.data(), data.size());
    return data.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) override {
    body_.append(data.data(), data.size());
    return data.size();
  }
  void on_finish_impl(error_code&) override {}

  std::string& body_;
  HeaderList& trailers_;
  int status_ = 0;
};

// A response that parseSimpleResponse took whole.
struct SimpleResponse {
  int status = 0;
  bool keep_alive = false;
  size_t head_bytes = 0; // status line and header fields, up to and with the blank line
  size_t body_bytes = 0; // right after the head
};

constexpr size_t kMaxSimpleHeadBytes = 4096;

// Character classes for parseSimpleResponse: a token character (RFC 7230 tchar, as
// basic_parser's table) and a plain one (in a reason phrase or field value: printable ASCII or
// HTAB; basic_parser also takes obs-text, which we leave to it).
constexpr uint8_t kToken = 1;
constexpr uint8_t kPlain = 2;
constexpr std::array<uint8_t, 256> kCharClass = [] {
  std::array<uint8_t, 256> table{};
  for (int c = ' '; c <= '~'; ++c)
    table[c] = kPlain;
  table['\t'] = kPlain;
  for (int c = '0'; c <= '9'; ++c)
    table[c] |= kToken;
  for (int c = 'a'; c <= 'z'; ++c)
    table[c] |= kToken;
  for (int c = 'A'; c <= 'Z'; ++c)
    table[c] |= kToken;
  for (char c : std::string_view("!#$%&'*+-.^_`|~"))
    table[static_cast<unsigned char>(c)] |= kToken;
  return table;
}();

bool is(uint8_t char_class, char c) {
  return (kCharClass[static_cast<unsigned char>(c)] & char_class) != 0;
}

// Case-insensitive, for token or plain characters against lower-case letters and '-' only.
bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size())
    return false;
  for (size_t i = 0; i < s.size(); ++i)
    if ((s[i] | 0x20) != lower[i])
      return false;
  return true;
}

// The common response in one pass, several times cheaper than basic_parser: HTTP/1.1, a status
// of 200-599 but 204 and 304, one plain Content-Length, Connection absent or exactly
// keep-alive or close, no Transfer-Encoding, Upgrade or Proxy-Connection, no folded lines,
// printable ASCII only, head and body all in `data`. Anything else is std::nullopt, and then
// basic_parser parses the response from its first byte (nothing is consumed here): every
// response this takes, basic_parser would have taken with the same results.
std::optional<SimpleResponse> parseSimpleResponse(std::string_view data) {
  constexpr std::string_view kVersion = "HTTP/1.1 ";
  const char* p = data.data();
  const char* const end = p + std::min(data.size(), kMaxSimpleHeadBytes);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (end - p < 15 || std::string_view(p, kVersion.size()) != kVersion)
    return std::nullopt;
  p += kVersion.size();
  if (p[0] < '2' || p[0] > '5' || !digit(p[1]) || !digit(p[2]) || p[3] != ' ')
    return std::nullopt;
  SimpleResponse r;
  r.status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
  if (r.status == 204 || r.status == 304)
    return std::nullopt;
  p += 4;
  while (p < end && is(kPlain, *p)) // the reason phrase
    ++p;
  if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
    return std::nullopt;
  p += 2;
  bool close = false;
  std::optional<uint64_t> length;
  for (;;) {
    if (end - p < 2)
      return std::nullopt;
    if (p[0] == '\r') {
      if (p[1] != '\n')
        return std::nullopt;
      p += 2;
      break;
    }
    const char* name_begin = p;
    while (p < end && is(kToken, *p))
      ++p;
    if (p == name_begin || p == end || *p != ':')
      return std::nullopt;
    const std::string_view name(name_begin, p - name_begin);
    ++p;
    while (p < end && (*p == ' ' || *p == '\t'))
      ++p;
    const char* value_begin = p;
    while (p < end && is(kPlain, *p))
      ++p;
    // CRLF, then not a folded continuation line.
    if (end - p < 3 || p[0] != '\r' || p[1] != '\n' || p[2] == ' ' || p[2] == '\t')
      return std::nullopt;
    const char* value_end = p;
    while (value_end > value_begin && (value_end[-1] == ' ' || value_end[-1] == '\t'))
      --value_end;
    p += 2;
    const std::string_view value(value_begin, value_end - value_begin);
    // The fields basic_parser acts on, told apart by length first: most fields are none.
    switch (name.size()) {
    case 14:
      if (equalsLower(name, "content-length")) {
        if (length || value.empty() || value.size() > 18)
          return std::nullopt;
        uint64_t n = 0;
        for (char c : value) {
          if (!digit(c))
            return std::nullopt;
          n = n * 10 + uint64_t(c - '0');
        }
        length = n;
      }
      break;
    case 10:
      if (equalsLower(name, "connection")) {
        if (equalsLower(value, "close"))
          close = true;
        else if (!equalsLower(value, "keep-alive"))
          return std::nullopt;
      }
      break;
    case 7:
    case 16:
    case 17:
      if (equalsLower(name, "upgrade") || equalsLower(name, "proxy-connection") ||
          equalsLower(name, "transfer-encoding"))
        return std::nullopt;
      break;
    }
  }
  r.head_bytes = size_t(p - data.data());
  if (!length || *length > kMaxBodyBytes || data.size() - r.head_bytes < *length)
    return std::nullopt;
  r.body_bytes = size_t(*length);
  r.keep_alive = !close;
  return r;
}

// Collects the header fields of a kept raw header block (cold path).
class HeaderCollector final : public http::basic_parser<false> {
public:
  explicit HeaderCollector(HeaderList& out) : out_(out) { skip(true); }

private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int, beast::string_view, int, error_code&) override {}
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    out_.emplace_back(std::string(name), std::string(value));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  size_t on_body_impl(beast::string_view data, error_code&) override { return data.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) override {
    return data.size();
  }
  void on_finish_impl(error_code&) override {}

  HeaderList& out_;
};

TransportError classify(const error_code& ec, bool connecting) {
  if (ec == beast::error::timeout)
    return TransportError::Timeout;
  if (ec == asio::error::operation_aborted)
    return TransportError::Cancelled;
  if (ec == asio::error::connection_refused)
    return TransportError::ConnectRefused;
  if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again ||
      ec == asio::error::no_data)
    return TransportError::Resolve;
  if (ec.category() == asio::error::get_ssl_category() ||
      ec.category() == asio::ssl::error::get_stream_category())
    return TransportError::Tls;
  if (ec.category() == error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return TransportError::Protocol;
  if (connecting)
    return TransportError::Connect;
  return TransportError::Reset;
}

// Endpoint::tls() without a strlen per call.
bool isTls(const common::Endpoint& e) {
  return std::string_view(e.scheme) == "https";
}

class BeastSession;

// Enforces request timeouts for one client's sessions without a timer operation per request:
// a session in flight holds a deadline, and one timer ticks while any session is in flight,
// closing the sockets of those past their deadline (their perform() then reports Timeout).
// The timer stops when nothing is in flight, so that an idle io_context runs out of work.
// Deadlines are kept here side by side, not in the sessions: a tick over thousands of sessions
// reads a few cache lines, not one per session.
class Sweeper : public std::enable_shared_from_this<Sweeper> {
public:
  Sweeper(asio::io_context& io, std::chrono::microseconds timeout) : timer_(io) {
    setPeriod(timeout);
  }
  // Returns the session's slot.
  size_t add(BeastSession* session) {
    sessions_.push_back(session);
    deadlines_.push_back(SteadyClock::time_point::max());
    return sessions_.size() - 1;
  }
  void remove(size_t slot);
  // A request's deadline, or time_point::max() for none.
  void setDeadline(size_t slot, SteadyClock::time_point deadline) { deadlines_[slot] = deadline; }
  // A request went in flight, with this timeout.
  void begin(std::chrono::microseconds timeout) {
    ++in_flight_;
    if (timeout < basis_) {
      setPeriod(timeout);
      if (armed_)
        arm(); // sooner than the tick already armed
    }
    if (!armed_)
      arm();
  }
  // A request left flight.
  void end() {
    if (--in_flight_ == 0 && armed_) {
      armed_ = false;
      timer_.cancel();
    }
  }

private:
  void setPeriod(std::chrono::microseconds timeout) {
    basis_ = timeout;
    period_ = std::clamp<SteadyClock::duration>(timeout / 10, kMinSweepPeriod, kMaxSweepPeriod);
  }
  void arm() {
    armed_ = true;
    timer_.expires_after(period_);
    // A cancelled wait (stopped or re-armed) does nothing: a newer wait, if any, took over.
    timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      if (ec)
        return;
      if (auto self = weak.lock())
        self->tick();
    });
  }
  void tick();

  asio::steady_timer timer_;
  std::vector<BeastSession*> sessions_;
  std::vector<SteadyClock::time_point> deadlines_; // by slot, as sessions_
  int in_flight_ = 0;
  bool armed_ = false;
  std::chrono::microseconds basis_{};
  SteadyClock::duration period_{};
};

class BeastSession final : public HttpSession {
public:
  BeastSession(asio::io_context& io, asio::ssl::context& ssl, const common::HttpSpec& spec,
               std::shared_ptr<Sweeper> sweeper)
      : spec_(spec), sweeper_(std::move(sweeper)), io_(io), ssl_(ssl) {
    slot_ = sweeper_->add(this);
  }
  ~BeastSession() override {
    if (in_flight_)
      sweeper_->end();
    sweeper_->remove(slot_);
  }

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override;
  HeaderList lastResponseHeaders() const override;
  std::optional<std::string_view> header(std::string_view) const override { return std::nullopt; }
  void cancel() noexcept override;

  // Called by the sweeper when the deadline passed: closes the connection of the request.
  void expire() noexcept {
    if (in_flight_ && !cancelled_ && !timed_out_) {
      timed_out_ = true;
      closeSocket();
    }
  }

private:
  friend class Sweeper;
  bool sameEndpoint(const common::Endpoint& e) const {
    return connected_ && e.port == port_ && e.host == host_ && isTls(e) == tls_;
  }
  Socket& lowest() { return tls_stream_ ? tls_stream_->next_layer() : *tcp_; }
  // Aborts the operation in flight; the connection's state is unknown afterwards.
  void closeSocket() noexcept {
    error_code ignored;
    if (tls_stream_)
      tls_stream_->next_layer().close(ignored);
    else if (tcp_)
      tcp_->close(ignored);
  }
  void closeConnection() noexcept;
  asio::awaitable<error_code> connect(const common::Endpoint& endpoint, bool& connect_phase);
  void serialise(const HttpRequest& request);
  // Keeps the header bytes of `used` bytes the parser just consumed from `data`.
  void keepHead(const char* data, size_t used);
  // Sends what of out_ the socket takes without waiting (usually all of it) and returns how
  // much; "would block" is not an error.
  size_t trySend(error_code& ec);

  // Hot first, what every request touches, in as few cache lines as we can.
  const common::HttpSpec& spec_;
  std::shared_ptr<Sweeper> sweeper_;
  size_t slot_ = 0; // in sweeper_
  bool connected_ = false;
  bool in_flight_ = false;
  bool cancelled_ = false;
  bool timed_out_ = false;
  bool tls_ = false;
  uint16_t port_ = 0;
  std::optional<Socket> tcp_;
  std::string host_;
  std::string out_;
  beast::flat_buffer buffer_;
  // A response parseSimpleResponse took stays in buffer_ until the next one is read: its body
  // and head are views of it, not copies. So does what closeConnection drops.
  size_t consumed_ = 0;
  std::string_view simple_head_;

  std::optional<ResponseParser> parser_;
  std::string body_;     // basic_parser's responses
  std::string raw_head_; // basic_parser's responses: status line and header fields, as received
  HeaderList trailers_;  // basic_parser's responses
  std::unique_ptr<TlsStream> tls_stream_; // TLS connections only
  asio::io_context& io_;
  asio::ssl::context& ssl_;
};

void Sweeper::remove(size_t slot) {
  sessions_[slot] = sessions_.back();
  deadlines_[slot] = deadlines_.back();
  sessions_[slot]->slot_ = slot;
  sessions_.pop_back();
  deadlines_.pop_back();
}

void Sweeper::tick() {
  const auto now = SteadyClock::now();
  for (size_t slot = 0; slot < deadlines_.size(); ++slot) {
    if (deadlines_[slot] <= now) {
      deadlines_[slot] = SteadyClock::time_point::max();
      sessions_[slot]->expire(); // closes its socket only: completions run later
    }
  }
  if (in_flight_ > 0)
    arm();
  else
    armed_ = false;
}

void BeastSession::closeConnection() noexcept {
  closeSocket();
  tls_stream_.reset();
  tcp_.reset();
  connected_ = false;
  consumed_ = buffer_.size(); // dropped before the next read, not now (see consumed_)
}

void BeastSession::cancel() noexcept {
  if (!in_flight_)
    return;
  cancelled_ = true;
  closeSocket();
}

asio::awaitable<error_code> BeastSession::connect(const common::Endpoint& endpoint,
                                                  bool& connect_phase) {
  closeConnection();
  connect_phase = true;
  error_code ec;
  tcp::resolver::results_type results;
  auto address = asio::ip::make_address(endpoint.host, ec);
  tcp::endpoint direct;
  if (!ec) {
    direct = tcp::endpoint(address, endpoint.port);
  } else {
    tcp::resolver resolver(io_);
    results = co_await resolver.async_resolve(endpoint.host, std::to_string(endpoint.port),
                                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return ec;
    if (cancelled_)
      co_return asio::error::operation_aborted;
  }
  if (endpoint.tls()) {
    tls_stream_ = std::make_unique<TlsStream>(io_.get_executor(), ssl_);
    if (!SSL_set_tlsext_host_name(tls_stream_->native_handle(), endpoint.host.c_str()))
      co_return error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    tls_stream_->set_verify_callback(asio::ssl::host_name_verification(endpoint.host));
  } else {
    tcp_.emplace(io_.get_executor());
  }
  auto& socket = lowest();
  // One budget for connect and handshake, as before the request's own (the resolve has none).
  sweeper_->setDeadline(slot_, SteadyClock::now() + spec_.timeout);
  if (results.empty())
    co_await socket.async_connect(direct, asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await asio::async_connect(socket, results, asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return ec;
  error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  // For the direct send (trySend), which must never block the thread; asynchronous
  // operations are unaffected.
  socket.non_blocking(true, ec);
  if (ec)
    co_return ec;
  if (tls_stream_) {
    co_await tls_stream_->async_handshake(asio::ssl::stream_base::client,
                                          asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return ec;
  }
  connected_ = true;
  host_ = endpoint.host;
  port_ = endpoint.port;
  tls_ = endpoint.tls();
  connect_phase = false;
  co_return error_code{};
}

// `wanted` in lower case.
bool isHeader(std::string_view name, std::string_view wanted) {
  if (name.size() != wanted.size())
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if ((c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c) != wanted[i])
      return false;
  }
  return true;
}

void BeastSession::serialise(const HttpRequest& request) {
  const auto& endpoint = *request.endpoint;
  // The scenario's own Host or User-Agent replaces ours: never send one twice.
  bool own_host = false;
  bool own_agent = false;
  if (request.headers) {
    for (const auto& header : *request.headers) {
      own_host = own_host || isHeader(header.first, "host");
      own_agent = own_agent || isHeader(header.first, "user-agent");
    }
  }
  out_.clear();
  out_.append(request.method);
  out_.push_back(' ');
  out_.append(request.target.empty() ? std::string_view("/") : request.target);
  out_.append(" HTTP/1.1\r\n"sv);
  if (!own_host) {
    out_.append("Host: "sv);
    const bool v6 = endpoint.host.find(':') != std::string::npos;
    if (v6)
      out_.push_back('[');
    out_.append(endpoint.host);
    if (v6)
      out_.push_back(']');
    if (endpoint.port != (isTls(endpoint) ? 443 : 80)) {
      char port[8];
      auto end = std::to_chars(port, port + sizeof port, endpoint.port).ptr;
      out_.push_back(':');
      out_.append(port, end);
    }
    out_.append("\r\n"sv);
  }
  if (!own_agent) {
    out_.append("User-Agent: "sv);
    out_.append(kUserAgent);
    out_.append("\r\n"sv);
  }
  if (request.headers) {
    for (const auto& [name, value] : *request.headers) {
      out_.append(name);
      out_.append(": "sv);
      out_.append(value);
      out_.append("\r\n"sv);
    }
  }
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH") {
    char length[24];
    auto end = std::to_chars(length, length + sizeof length, request.body.size()).ptr;
    out_.append("Content-Length: "sv);
    out_.append(length, end);
    out_.append("\r\n"sv);
  }
  if (!spec_.keep_alive)
    out_.append("Connection: close\r\n"sv);
  out_.append("\r\n"sv);
  out_.append(request.body);
}

size_t BeastSession::trySend(error_code& ec) {
  size_t sent = 0;
  while (sent < out_.size()) {
    size_t n = tcp_->write_some(asio::buffer(out_.data() + sent, out_.size() - sent), ec);
    sent += n;
    if (ec)
      break;
  }
  if (ec == asio::error::would_block || ec == asio::error::try_again)
    ec.clear(); // the caller sends the rest asynchronously
  return sent;
}

// One function on purpose: every nested coroutine costs a frame per request.
asio::awaitable<void> BeastSession::perform(const HttpRequest& request, HttpResponse& out) {
  out.error = TransportError::None;
  out.status = 0;
  out.body = {};
  out.bytes_in = 0;
  out.bytes_out = 0;
  out.detail.clear();
  serialise(request);
  in_flight_ = true;
  cancelled_ = false;
  timed_out_ = false;
  sweeper_->begin(std::min(request.timeout, spec_.timeout));

  error_code ec;
  bool connect_phase = false;
  int status = 0;
  bool keep_alive = false;
  std::string_view body;
  for (int attempt = 0;; ++attempt) {
    const bool reused = sameEndpoint(*request.endpoint);
    bool got_bytes = false;
    if (!reused)
      ec = co_await connect(*request.endpoint, connect_phase);
    if (!ec) {
      sweeper_->setDeadline(slot_, SteadyClock::now() + request.timeout);
      // Send.
      if (tls_stream_) {
        out.bytes_out += co_await asio::async_write(*tls_stream_, asio::buffer(out_),
                                                    asio::redirect_error(asio::use_awaitable, ec));
      } else {
        size_t sent = trySend(ec);
        if (!ec && sent < out_.size())
          sent += co_await asio::async_write(*tcp_,
                                             asio::buffer(out_.data() + sent, out_.size() - sent),
                                             asio::redirect_error(asio::use_awaitable, ec));
        out.bytes_out += sent;
      }
    }
    if (!ec) {
      // Receive, as http::async_read does: bytes_in counts what the parser consumed.
      const bool head = request.method == "HEAD";
      bool first_look = true;
      bool simple = false;
      buffer_.consume(consumed_);
      consumed_ = 0;
      simple_head_ = {};
      raw_head_.clear();
      trailers_.clear();
      parser_.reset();
      size_t parsed = 0;
      for (;;) {
        if (buffer_.size() != 0 && first_look) {
          first_look = false;
          const std::string_view data(static_cast<const char*>(buffer_.data().data()),
                                      buffer_.size());
          if (auto r = head ? std::nullopt : parseSimpleResponse(data)) {
            simple_head_ = data.substr(0, r->head_bytes);
            body = data.substr(r->head_bytes, r->body_bytes);
            status = r->status;
            keep_alive = r->keep_alive;
            parsed = r->head_bytes + r->body_bytes;
            consumed_ = parsed;
            simple = true;
            break;
          }
          parser_.emplace(body_, trailers_);
          if (head)
            parser_->skip(true);
        }
        if (buffer_.size() != 0) {
          const bool in_header = !parser_->is_header_done();
          const auto data = buffer_.data();
          size_t used = parser_->put(data, ec);
          if (in_header)
            keepHead(static_cast<const char*>(data.data()), used);
          parsed += used;
          buffer_.consume(used);
          if (ec == http::error::need_more)
            ec = {};
          else if (ec || parser_->is_done())
            break;
        }
        auto space = buffer_.prepare(beast::read_size(buffer_, kMaxReadBytes));
        size_t n = 0;
        if (tls_stream_)
          n = co_await tls_stream_->async_read_some(space,
                                                    asio::redirect_error(asio::use_awaitable, ec));
        else
          n = co_await tcp_->async_read_some(space, asio::redirect_error(asio::use_awaitable, ec));
        buffer_.commit(n);
        if (ec == asio::error::eof) {
          if (parser_ && parser_->got_some()) {
            ec = {};
            parser_->put_eof(ec); // a body that ends with the connection
          } else {
            ec = http::error::end_of_stream;
          }
          break;
        }
        if (ec)
          break;
      }
      out.bytes_in += parsed;
      got_bytes = parsed > 0 || (parser_ && parser_->got_some());
      if (!ec && !simple) {
        status = parser_->status();
        keep_alive = parser_->keep_alive();
        body = body_;
      }
    }
    if (ec && timed_out_)
      ec = beast::error::timeout;
    // A keep-alive connection the server closed while idle fails before any response byte:
    // that is not the target failing, so retry once on a fresh connection (as curl does).
    if (ec && attempt == 0 && reused && !got_bytes && !cancelled_ && !timed_out_) {
      closeConnection();
      continue;
    }
    break;
  }
  in_flight_ = false;
  sweeper_->setDeadline(slot_, SteadyClock::time_point::max());
  sweeper_->end();

  if (cancelled_) {
    closeConnection();
    out.error = TransportError::Cancelled;
    co_return;
  }
  if (ec) {
    out.error = classify(ec, connect_phase);
    out.detail = ec.message();
    closeConnection();
    co_return;
  }
  out.status = status;
  out.body = body;
  // A deadline that passed as the response completed closed the socket: do not reuse it.
  if (!keep_alive || !spec_.keep_alive || timed_out_)
    closeConnection();
}

void BeastSession::keepHead(const char* data, size_t used) {
  // The parser may take the header over several reads; when it is done, the data consumed
  // last may run on into the body: cut at the blank line, the first one by definition.
  const size_t search_from = raw_head_.size() >= 3 ? raw_head_.size() - 3 : 0;
  raw_head_.append(data, std::min(used, kMaxHeadBytes));
  if (parser_->is_header_done()) {
    auto end = raw_head_.find("\r\n\r\n", search_from);
    if (end != std::string::npos)
      raw_head_.resize(end + 4);
  }
}

HeaderList BeastSession::lastResponseHeaders() const {
  HeaderList headers;
  HeaderCollector collector(headers);
  error_code ignored;
  std::string_view head = simple_head_.empty() ? std::string_view(raw_head_) : simple_head_;
  collector.put(asio::buffer(head.data(), head.size()), ignored);
  headers.insert(headers.end(), trailers_.begin(), trailers_.end());
  return headers;
}

class BeastClient final : public HttpClient {
public:
  BeastClient(asio::io_context& io, const common::HttpSpec& spec)
      : io_(io), spec_(spec), ssl_(asio::ssl::context::tls_client),
        sweeper_(std::make_shared<Sweeper>(io, spec.timeout)) {
    ssl_.set_default_verify_paths();
    ssl_.set_verify_mode(asio::ssl::verify_peer);
  }
  std::unique_ptr<HttpSession> newSession() override {
    return std::make_unique<BeastSession>(io_, ssl_, spec_, sweeper_);
  }

private:
  asio::io_context& io_;
  const common::HttpSpec& spec_;
  asio::ssl::context ssl_;
  std::shared_ptr<Sweeper> sweeper_;
};

} // namespace

std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec) {
  return std::make_unique<BeastClient>(io, spec);
}

} // namespace stampede::worker
