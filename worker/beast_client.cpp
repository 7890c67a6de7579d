// HTTP/1.1 on Boost.Beast: one keep-alive connection per session, the request serialised into a
// reused string, the response read into a reused buffer, so the steady state allocates nothing
// per request.
//
// The hot path is one coroutine frame and one asynchronous operation per request: the request
// goes out with a direct non-blocking send (the socket buffer is empty on a keep-alive
// connection), and only the response is awaited. The common response (HTTP/1.1, Content-Length,
// all in one read) is parsed in one pass and left in place (Http1ResponseParser); anything else
// goes to basic_parser. No timer is armed per request: one timer per client sweeps the
// deadlines of the requests in flight (Sweeper). The connection under a session (resolve,
// --allow-target, connect, TLS handshake) is worker/beast_connection.
#include "worker/beast_connection.h"
#include "worker/deadline_sweeper.h"
#include "worker/gzip_decoder.h"
#include "worker/http1_parser.h"
#include "worker/http1_request.h"
#include "worker/http_client.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <array>
#include <optional>

namespace stampede::worker {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using beast::error_code;
using SteadyClock = std::chrono::steady_clock;
using namespace std::string_view_literals;

constexpr size_t kMaxReadBytes = 64 * 1024; // per read, as http::async_read
// What a session's first read asks for (http::async_read asks for 512): the responses of a
// load test are mostly small (a health check, an API's JSON), and the buffer grows, for good,
// to what larger ones need. Each of thousands of virtual users holds one.
constexpr size_t kMinReadBytes = 256;
// Timeouts are enforced to within a tenth of the shortest one, at most this late.

class BeastSession;

// `co_await readSome(socket, buffer, ec, n)` in an asio::awaitable<> coroutine: the read
// asio::use_awaitable would make, less the coroutine frame Boost 1.74 allocates for every
// operation it starts (async_result<use_awaitable_t>::initiate is a coroutine). The handler
// takes the suspended coroutine stack, as use_awaitable's does, writes the outcome into the
// caller's `ec` and `n` and resumes the caller in place. Relies on Boost 1.74's await_transform
// of a function object (awaitable_frame_base), the hook use_awaitable's initiation uses.
using AwaitableThread = asio::detail::awaitable_thread<asio::any_io_executor>;

class ResumeAfterRead : public AwaitableThread {
public:
  ResumeAfterRead(AwaitableThread* suspended, error_code& ec, size_t& n)
      : AwaitableThread(std::move(*suspended)), ec_(&ec), n_(&n) {}
  void operator()(const error_code& ec, size_t n) {
    *ec_ = ec;
    *n_ = n;
    this->top_of_stack_->attach_thread(this);
    this->pump();
  }

private:
  error_code* ec_;
  size_t* n_;
};

template <class Stream>
auto readSome(Stream& stream, asio::mutable_buffer space, error_code& ec, size_t& n) {
  return [&stream, space, &ec, &n](auto* frame) {
    stream.async_read_some(space, ResumeAfterRead(frame->detach_thread(), ec, n));
    return static_cast<AwaitableThread*>(nullptr);
  };
}

class BeastSession;
using Sweeper = DeadlineSweeper<BeastSession>;

class BeastSession final : public HttpSession {
public:
  BeastSession(asio::io_context& io, BeastTlsConfig& tls, const common::HttpSpec& spec,
               std::shared_ptr<Sweeper> sweeper, HostResolver& resolver, const TargetPolicy* allow,
               std::string& scratch)
      : spec_(spec), sweeper_(std::move(sweeper)), scratch_(scratch),
        connection_(io, tls, resolver, allow) {
    slot_ = sweeper_->add(this);
  }
  ~BeastSession() override {
    if (in_flight_)
      sweeper_->end();
    sweeper_->remove(slot_);
  }

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override {
    return performFrom(request, out, 0); // not a coroutine itself: no second frame
  }
  bool start(const HttpRequest& request, HttpResponse& out, HttpCompletion& done) override;
  HeaderList lastResponseHeaders() const override { return parser_.fields(); }
  std::optional<std::string_view> header(std::string_view name) const override {
    return parser_.header(name);
  }
  void cancel() noexcept override;

  // Called by the sweeper when the deadline passed: closes the connection of the request.
  void expire() noexcept {
    if (in_flight_ && !cancelled_ && !timed_out_) {
      timed_out_ = true;
      connection_.abort();
    }
  }

private:
  friend class DeadlineSweeper<BeastSession>;
  // The completion handlers of start()'s operations: a pointer, no coroutine.
  struct ReadHandler {
    BeastSession* self;
    void operator()(const error_code& ec, size_t n) const { self->onRead(ec, n); }
  };
  struct WriteHandler {
    BeastSession* self;
    void operator()(const error_code& ec, size_t n) const { self->onWritten(ec, n); }
  };
  // perform() from `first_attempt` (1: start()'s reused connection failed, retry on a new one).
  asio::awaitable<void> performFrom(const HttpRequest& request, HttpResponse& out,
                                    int first_attempt);
  // Before the first attempt: forgets the last response, the request goes in flight.
  void begin(const HttpRequest& request, HttpResponse& out);
  // After the last attempt: the request leaves flight, `out` says how it went.
  void finish(const HttpRequest& request, HttpResponse& out, error_code ec, bool connect_phase);
  // start()'s steps, one per operation that completes.
  void readResponse();
  void onWritten(const error_code& ec, size_t n);
  void onRead(error_code ec, size_t n);
  void settle(error_code ec);
  void closeConnection() noexcept;
  asio::awaitable<error_code> connect(const common::Endpoint& endpoint, bool& connect_phase);
  std::string_view serialise(const HttpRequest& request, std::string& into) const {
    return writeHttp1Request(request, spec_.keep_alive, into);
  }

  // Hot first, what every request touches, in as few cache lines as we can.
  const common::HttpSpec& spec_;
  std::shared_ptr<Sweeper> sweeper_;
  size_t slot_ = 0; // in sweeper_
  bool in_flight_ = false;
  bool cancelled_ = false;
  bool timed_out_ = false;
  // A plain request is serialised into the client's scratch string, which all its sessions
  // share: nothing else runs on the thread between serialising and the direct send. Only
  // what must outlive a co_await is kept here: a TLS request, or what the socket did not take.
  std::string& scratch_;
  std::string out_;
  beast::flat_buffer buffer_;
  // A response the parser took in place stays in buffer_ until the next one is read: its body
  // and head are views of it, not copies. So does what closeConnection drops.
  size_t consumed_ = 0;
  Http1ResponseParser parser_{size_t(spec_.max_body)};
  BeastConnection connection_;
  std::unique_ptr<GzipDecoder> gzip_; // after the first gzip response
  // The request start() began, while it is in flight.
  const HttpRequest* started_ = nullptr;
  HttpResponse* started_out_ = nullptr;
  HttpCompletion* started_done_ = nullptr;
};

void BeastSession::closeConnection() noexcept {
  connection_.close();
  consumed_ = buffer_.size(); // dropped before the next read, not now (see consumed_)
}

void BeastSession::cancel() noexcept {
  if (!in_flight_)
    return;
  cancelled_ = true;
  connection_.abort();
}

asio::awaitable<error_code> BeastSession::connect(const common::Endpoint& endpoint,
                                                  bool& connect_phase) {
  closeConnection();
  connect_phase = true;
  // One budget for resolve, connect and handshake, before the request's own.
  sweeper_->setDeadline(slot_, SteadyClock::now() + spec_.timeout);
  const error_code ec = co_await connection_.open(endpoint, spec_.timeout, cancelled_);
  if (!ec)
    connect_phase = false;
  co_return ec;
}

void BeastSession::begin(const HttpRequest& request, HttpResponse& out) {
  out.error = TransportError::None;
  out.status = 0;
  out.body = {};
  out.bytes_in = 0;
  out.bytes_out = 0;
  out.http_version = 11;
  out.detail.clear();
  // Also forgets the last response (header()) should this request fail before its own. A retry
  // below starts from here too: it happens only when no byte of a response arrived.
  parser_.start(request.method == "HEAD", request.keep_body);
  in_flight_ = true;
  cancelled_ = false;
  timed_out_ = false;
  sweeper_->begin(std::min(request.timeout, spec_.timeout));
}

// One function on purpose: every nested coroutine costs a frame per request.
asio::awaitable<void> BeastSession::performFrom(const HttpRequest& request, HttpResponse& out,
                                                int first_attempt) {
  if (first_attempt == 0)
    begin(request, out);
  error_code ec;
  bool connect_phase = false;
  for (int attempt = first_attempt;; ++attempt) {
    const bool reused = connection_.connectedTo(*request.endpoint);
    bool got_bytes = false;
    if (!reused)
      ec = co_await connect(*request.endpoint, connect_phase);
    if (!ec) {
      sweeper_->setDeadline(slot_, SteadyClock::now() + request.timeout);
      // Send.
      // Serialised only now, after any co_await of the connect (see scratch_).
      if (BeastTlsStream* tls = connection_.tls()) {
        const std::string_view wire = serialise(request, out_);
        out.bytes_out += co_await asio::async_write(*tls, asio::buffer(wire),
                                                    asio::redirect_error(asio::use_awaitable, ec));
      } else {
        const std::string_view wire = serialise(request, scratch_);
        size_t sent = connection_.trySend(wire, ec);
        if (!ec && sent < wire.size()) {
          out_.assign(wire.substr(sent));
          sent += co_await asio::async_write(*connection_.tcp(), asio::buffer(out_),
                                             asio::redirect_error(asio::use_awaitable, ec));
        }
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
        auto space = buffer_.prepare(
            std::clamp(buffer_.capacity() - buffer_.size(), kMinReadBytes, kMaxReadBytes));
        size_t n = 0;
        if (BeastTlsStream* tls = connection_.tls())
          n = co_await tls->async_read_some(space, asio::redirect_error(asio::use_awaitable, ec));
        else
          co_await readSome(*connection_.tcp(), space, ec, n);
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
  finish(request, out, ec, connect_phase);
}

void BeastSession::finish(const HttpRequest& request, HttpResponse& out, error_code ec,
                          bool connect_phase) {
  in_flight_ = false;
  sweeper_->setDeadline(slot_, SteadyClock::time_point::max());
  sweeper_->end();

  if (cancelled_) {
    closeConnection();
    out.error = TransportError::Cancelled;
    return;
  }
  if (ec && connection_.error() != TransportError::None) {
    out.error = connection_.error();
    out.detail = connection_.detail();
    closeConnection();
    return;
  }
  if (ec) {
    out.error = classifyBeastError(ec, connect_phase);
    if (out.error == TransportError::BodyTooLarge)
      out.detail = "body over http.max_body (" + std::to_string(spec_.max_body) + " bytes)";
    else if (out.error != TransportError::Tls)
      out.detail = ec.message();
    else if (isTlsEndpoint(*request.endpoint) && !connection_.tlsConfig().error.empty())
      out.detail = connection_.tlsConfig().error;
    else
      out.detail = tlsDetail(ec, connection_.tls());
    closeConnection();
    return;
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

bool BeastSession::start(const HttpRequest& request, HttpResponse& out, HttpCompletion& done) {
  // Anything else (connect, TLS) takes perform()'s coroutine.
  if (!connection_.connectedTo(*request.endpoint) || connection_.tls())
    return false;
  begin(request, out);
  started_ = &request;
  started_out_ = &out;
  started_done_ = &done;
  sweeper_->setDeadline(slot_, SteadyClock::now() + request.timeout);
  const std::string_view wire = serialise(request, scratch_);
  error_code ec;
  const size_t sent = connection_.trySend(wire, ec);
  out.bytes_out += sent;
  if (ec) {
    // Settled from the io_context: never from within start().
    asio::post(connection_.tcp()->get_executor(), [this, ec] { settle(ec); });
  } else if (sent < wire.size()) {
    out_.assign(wire.substr(sent));
    asio::async_write(*connection_.tcp(), asio::buffer(out_), WriteHandler{this});
  } else {
    readResponse();
  }
  return true;
}

void BeastSession::onWritten(const error_code& ec, size_t n) {
  started_out_->bytes_out += n;
  if (ec)
    settle(ec);
  else
    readResponse();
}

// As performFrom's receive loop, one read per call.
void BeastSession::readResponse() {
  buffer_.consume(consumed_);
  consumed_ = 0;
  if (buffer_.size() != 0) {
    // Bytes past the last response: parsed from the io_context, never from within start().
    asio::post(connection_.tcp()->get_executor(), [this] { onRead(error_code{}, 0); });
    return;
  }
  auto space = buffer_.prepare(
      std::clamp(buffer_.capacity() - buffer_.size(), kMinReadBytes, kMaxReadBytes));
  connection_.tcp()->async_read_some(space, ReadHandler{this});
}

void BeastSession::onRead(error_code ec, size_t n) {
  buffer_.commit(n);
  if (ec == asio::error::eof) {
    parser_.feedEof(ec);
  } else if (!ec) {
    const std::string_view data(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    const size_t used = parser_.feed(data, ec);
    started_out_->bytes_in += used;
    if (!ec && !parser_.done()) {
      buffer_.consume(used);
      auto space = buffer_.prepare(
          std::clamp(buffer_.capacity() - buffer_.size(), kMinReadBytes, kMaxReadBytes));
      connection_.tcp()->async_read_some(space, ReadHandler{this});
      return;
    }
    consumed_ = used; // the response may be views of buffer_: see consumed_
  }
  settle(ec);
}

// The end of start()'s request, as performFrom's first attempt ends on a reused connection.
void BeastSession::settle(error_code ec) {
  const HttpRequest& request = *started_;
  HttpResponse& out = *started_out_;
  HttpCompletion& done = *started_done_;
  started_ = nullptr;
  started_out_ = nullptr;
  started_done_ = nullptr;
  if (ec && timed_out_)
    ec = beast::error::timeout;
  if (ec && !parser_.gotSome() && !cancelled_ && !timed_out_) {
    // The server closed the idle keep-alive connection: retry once on a fresh one.
    closeConnection();
    asio::co_spawn(connection_.io(), performFrom(request, out, 1),
                   [&done](std::exception_ptr error) { done.complete(std::move(error)); });
    return;
  }
  finish(request, out, ec, false);
  done.complete(nullptr); // last: the user may start its next request, or drop this session
}

class BeastClient final : public HttpClient {
public:
  BeastClient(asio::io_context& io, const common::HttpSpec& spec,
              std::shared_ptr<const TargetPolicy> allow, bool defer_system_ca)
      : io_(io), spec_(spec), tls_(spec.tls, defer_system_ca),
        sweeper_(std::make_shared<Sweeper>(io, spec.timeout)), resolver_(io),
        allow_(std::move(allow)) {}
  std::unique_ptr<HttpSession> newSession() override {
    return std::make_unique<BeastSession>(io_, tls_, spec_, sweeper_, resolver_, allow_.get(),
                                          scratch_);
  }

private:
  asio::io_context& io_;
  const common::HttpSpec& spec_;
  BeastTlsConfig tls_;
  std::shared_ptr<Sweeper> sweeper_;
  HostResolver resolver_;
  std::shared_ptr<const TargetPolicy> allow_;
  std::string scratch_; // every plain request, serialised (BeastSession::scratch_)
};

} // namespace

std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec,
                                            std::shared_ptr<const TargetPolicy> allow) {
  return std::make_unique<BeastClient>(io, spec, std::move(allow), false);
}

std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec,
                                            std::shared_ptr<const TargetPolicy> allow,
                                            bool defer_system_ca) {
  return std::make_unique<BeastClient>(io, spec, std::move(allow), defer_system_ca);
}

} // namespace stampede::worker
