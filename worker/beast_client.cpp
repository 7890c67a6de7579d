// HTTP/1.1 on Boost.Beast: one keep-alive connection per session, the request serialised into a
// reused string, the response read into a reused buffer, so the steady state allocates nothing
// per request.
//
// The hot path is one coroutine frame and one asynchronous operation per request: the request
// goes out with a direct non-blocking send (the socket buffer is empty on a keep-alive
// connection), and only the response is awaited. The common response (HTTP/1.1, Content-Length,
// all in one read) is parsed in one pass and left in place (Http1ResponseParser); anything else
// goes to basic_parser. No timer is armed per request: one timer per client sweeps the
// deadlines of the requests in flight (Sweeper).
#include "worker/gzip_decoder.h"
#include "worker/host_resolver.h"
#include "worker/http1_parser.h"
#include "worker/http_client.h"
#include "worker/target_policy.h"

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

constexpr size_t kMaxReadBytes = 64 * 1024; // per read, as http::async_read
constexpr std::string_view kUserAgent = "stampede/" STAMPEDE_VERSION;
// Timeouts are enforced to within a tenth of the shortest one, at most this late.
constexpr std::chrono::milliseconds kMaxSweepPeriod{100};
constexpr std::chrono::milliseconds kMinSweepPeriod{1};

TransportError classify(const error_code& ec, bool connecting) {
  if (ec == beast::error::timeout)
    return TransportError::Timeout;
  if (ec == http::error::body_limit)
    return TransportError::BodyTooLarge;
  if (ec == asio::error::operation_aborted)
    return TransportError::Cancelled;
  if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system)
    return TransportError::GeneratorFdExhausted;
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

// The client's TLS settings (http.tls), shared by its sessions.
struct TlsConfig {
  explicit TlsConfig(const common::TlsSpec& spec);
  asio::ssl::context context{asio::ssl::context::tls_client};
  bool verify = true;
  std::string error; // why the settings are unusable (a bad PEM): every TLS connection fails so
};

TlsConfig::TlsConfig(const common::TlsSpec& spec) : verify(spec.verify) {
  // Outside a connection the errors are configuration ones: say which setting.
  const char* what = "tls";
  try {
    if (!spec.verify) {
      context.set_verify_mode(asio::ssl::verify_none);
    } else {
      context.set_verify_mode(asio::ssl::verify_peer);
      // As curl's CURLOPT_CAINFO_BLOB: the given authorities replace the system's.
      what = "tls.ca";
      if (spec.ca_pem.empty())
        context.set_default_verify_paths();
      else
        context.add_certificate_authority(asio::buffer(spec.ca_pem));
    }
    if (!spec.cert_pem.empty()) {
      what = "tls.cert";
      context.use_certificate_chain(asio::buffer(spec.cert_pem));
      what = "tls.key";
      const std::string& key = spec.key_pem.empty() ? spec.cert_pem : spec.key_pem;
      context.use_private_key(asio::buffer(key), asio::ssl::context::pem);
    }
  } catch (const std::exception& e) {
    error = std::string(what) + ": " + e.what();
  }
}

// A TLS error in one line, with the reason the peer's certificate was refused if it was.
std::string tlsDetail(const error_code& ec, TlsStream* stream) {
  std::string detail = ec.message();
  if (stream) {
    long verify = SSL_get_verify_result(stream->native_handle());
    if (verify != X509_V_OK) {
      detail += ": ";
      detail += X509_verify_cert_error_string(verify);
    }
  }
  return detail;
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
  BeastSession(asio::io_context& io, TlsConfig& tls, const common::HttpSpec& spec,
               std::shared_ptr<Sweeper> sweeper, HostResolver& resolver, const TargetPolicy* allow)
      : spec_(spec), sweeper_(std::move(sweeper)), io_(io), tls_config_(tls), resolver_(resolver),
        allow_(allow) {
    slot_ = sweeper_->add(this);
  }
  ~BeastSession() override {
    if (in_flight_)
      sweeper_->end();
    sweeper_->remove(slot_);
  }

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override;
  HeaderList lastResponseHeaders() const override { return parser_.fields(); }
  std::optional<std::string_view> header(std::string_view name) const override {
    return parser_.header(name);
  }
  void cancel() noexcept override;

  // Called by the sweeper when the deadline passed: closes the connection of the request.
  void expire() noexcept {
    if (in_flight_ && !cancelled_ && !timed_out_) {
      timed_out_ = true;
      closeSocket();
      if (host_wait_)
        host_wait_->abort();
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
  // A response the parser took in place stays in buffer_ until the next one is read: its body
  // and head are views of it, not copies. So does what closeConnection drops.
  size_t consumed_ = 0;
  Http1ResponseParser parser_{size_t(spec_.max_body)};

  std::unique_ptr<GzipDecoder> gzip_;     // after the first gzip response
  std::unique_ptr<TlsStream> tls_stream_; // TLS connections only
  asio::io_context& io_;
  TlsConfig& tls_config_;
  // Connecting (cold: once per connection).
  HostResolver& resolver_;
  const TargetPolicy* allow_;            // --allow-target, or nullptr
  std::optional<HostWait> host_wait_;    // after the first host name
  std::vector<tcp::endpoint> addresses_; // where connect() may connect
  // Why connect() failed when its error code does not say it all: a resolve error or an
  // address outside --allow-target; None otherwise.
  TransportError connect_error_ = TransportError::None;
  std::string connect_detail_;
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
  if (host_wait_)
    host_wait_->abort();
}

asio::awaitable<error_code> BeastSession::connect(const common::Endpoint& endpoint,
                                                  bool& connect_phase) {
  closeConnection();
  connect_phase = true;
  connect_error_ = TransportError::None;
  // One budget for resolve, connect and handshake, before the request's own.
  sweeper_->setDeadline(slot_, SteadyClock::now() + spec_.timeout);
  error_code ec;
  addresses_.clear();
  auto address = asio::ip::make_address(endpoint.host, ec);
  const bool address_given = !ec;
  ec.clear();
  if (address_given) {
    addresses_.emplace_back(address, endpoint.port);
  } else {
    // Not asio's resolver: its lookups wait in line on one thread per io_context, and neither
    // a deadline nor cancel() ends a getaddrinfo that hangs.
    HostAnswerPtr answer = resolver_.fresh(endpoint.host);
    if (!answer) {
      if (!host_wait_)
        host_wait_.emplace(io_);
      answer = co_await resolver_.resolve(endpoint.host, *host_wait_);
    }
    if (cancelled_)
      co_return asio::error::operation_aborted;
    connect_error_ = TransportError::Resolve;
    if (!answer) {
      connect_detail_ = "no answer for " + endpoint.host + " within http.timeout (" +
                        std::to_string(spec_.timeout.count() / 1000) + " ms)";
      co_return asio::error::timed_out;
    }
    if (answer->addresses.empty()) {
      connect_detail_ = endpoint.host + ": " + answer->error;
      co_return asio::error::host_not_found;
    }
    connect_error_ = TransportError::None;
    for (const auto& a : answer->addresses)
      addresses_.emplace_back(a, endpoint.port);
  }
  if (allow_) {
    // Only to addresses --allow-target allows: nothing is sent to the others.
    std::optional<asio::ip::address> refused;
    std::erase_if(addresses_, [&](const tcp::endpoint& e) {
      if (allow_->allows(e.address()))
        return false;
      refused = e.address();
      return true;
    });
    if (addresses_.empty()) {
      connect_error_ = TransportError::TargetNotAllowed;
      connect_detail_ = (address_given ? "" : endpoint.host + ": ") + allow_->refusal(*refused);
      co_return asio::error::access_denied;
    }
  }
  if (endpoint.tls()) {
    if (!tls_config_.error.empty())
      co_return asio::ssl::error::unspecified_system_error; // perform() says why
    tls_stream_ = std::make_unique<TlsStream>(io_.get_executor(), tls_config_.context);
    // SNI names a host, never an address (RFC 6066, 3).
    if (!address_given &&
        !SSL_set_tlsext_host_name(tls_stream_->native_handle(), endpoint.host.c_str()))
      co_return error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    if (tls_config_.verify)
      tls_stream_->set_verify_callback(asio::ssl::host_name_verification(endpoint.host));
  } else {
    tcp_.emplace(io_.get_executor());
  }
  auto& socket = lowest();
  if (addresses_.size() == 1)
    co_await socket.async_connect(addresses_[0], asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await asio::async_connect(socket, addresses_, asio::redirect_error(asio::use_awaitable, ec));
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
  // The scenario's own Host, User-Agent or Accept-Encoding replaces ours: never send one twice.
  bool own_host = false;
  bool own_agent = false;
  bool own_encoding = false;
  if (request.headers) {
    for (const auto& header : *request.headers) {
      own_host = own_host || isHeader(header.first, "host");
      own_agent = own_agent || isHeader(header.first, "user-agent");
      own_encoding = own_encoding || isHeader(header.first, "accept-encoding");
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
  if (!own_encoding)
    out_.append("Accept-Encoding: gzip\r\n"sv);
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
  out.http_version = 11;
  out.detail.clear();
  serialise(request);
  // Also forgets the last response (header()) should this request fail before its own. A retry
  // below starts from here too: it happens only when no byte of a response arrived.
  parser_.start(request.method == "HEAD", request.keep_body);
  in_flight_ = true;
  cancelled_ = false;
  timed_out_ = false;
  sweeper_->begin(std::min(request.timeout, spec_.timeout));

  error_code ec;
  bool connect_phase = false;
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
      buffer_.consume(consumed_);
      consumed_ = 0;
      for (;;) {
        if (buffer_.size() != 0) {
          const std::string_view data(static_cast<const char*>(buffer_.data().data()),
                                      buffer_.size());
          const size_t used = parser_.feed(data, ec);
          out.bytes_in += used;
          if (ec || parser_.done()) {
            consumed_ = used; // the response may be views of buffer_: see consumed_
            break;
          }
          buffer_.consume(used);
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
          parser_.feedEof(ec);
          break;
        }
        if (ec)
          break;
      }
      got_bytes = parser_.gotSome();
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
  if (ec && connect_error_ != TransportError::None) {
    out.error = connect_error_;
    out.detail = connect_detail_;
    closeConnection();
    co_return;
  }
  if (ec) {
    out.error = classify(ec, connect_phase);
    if (out.error == TransportError::BodyTooLarge)
      out.detail = "body over http.max_body (" + std::to_string(spec_.max_body) + " bytes)";
    else if (out.error != TransportError::Tls)
      out.detail = ec.message();
    else if (isTls(*request.endpoint) && !tls_config_.error.empty())
      out.detail = tls_config_.error;
    else
      out.detail = tlsDetail(ec, tls_stream_.get());
    closeConnection();
    co_return;
  }
  out.status = parser_.status();
  out.body = parser_.body();
  if (parser_.gzip() && !out.body.empty()) {
    if (!gzip_)
      gzip_ = std::make_unique<GzipDecoder>();
    // A body nobody reads is not decoded, so not checked either: only its first bytes, for an
    // error report.
    if (!request.keep_body) {
      gzip_->decodePrefix(parser_.body(), kBodyExcerptBytes, out.body);
    } else if (const char* error = gzip_->decode(parser_.body(), spec_.max_body, out.body)) {
      const bool too_large = error == GzipDecoder::kTooLarge;
      out.error = too_large ? TransportError::BodyTooLarge : TransportError::Protocol;
      out.status = 0;
      out.body = {};
      out.detail = too_large ? "decoded body over http.max_body (" +
                                   std::to_string(spec_.max_body) + " bytes)"
                             : std::string("gzip body: ") + error;
    }
  }
  // A deadline that passed as the response completed closed the socket: do not reuse it.
  if (!parser_.keepAlive() || !spec_.keep_alive || timed_out_)
    closeConnection();
}

class BeastClient final : public HttpClient {
public:
  BeastClient(asio::io_context& io, const common::HttpSpec& spec,
              std::shared_ptr<const TargetPolicy> allow)
      : io_(io), spec_(spec), tls_(spec.tls), sweeper_(std::make_shared<Sweeper>(io, spec.timeout)),
        resolver_(io), allow_(std::move(allow)) {}
  std::unique_ptr<HttpSession> newSession() override {
    return std::make_unique<BeastSession>(io_, tls_, spec_, sweeper_, resolver_, allow_.get());
  }

private:
  asio::io_context& io_;
  const common::HttpSpec& spec_;
  TlsConfig tls_;
  std::shared_ptr<Sweeper> sweeper_;
  HostResolver resolver_;
  std::shared_ptr<const TargetPolicy> allow_;
};

} // namespace

std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec,
                                            std::shared_ptr<const TargetPolicy> allow) {
  return std::make_unique<BeastClient>(io, spec, std::move(allow));
}

} // namespace stampede::worker
