#include "worker/stomp_transport.h"

#include <poll.h>

#include <algorithm>

namespace stampede::worker {
namespace {

using boost::system::error_code;
using std::chrono::microseconds;
using std::chrono::milliseconds;

bool isTlsError(const error_code& ec) {
  return ec && ec != asio::ssl::error::stream_truncated &&
         (ec.category() == asio::error::get_ssl_category() ||
          ec.category() == asio::ssl::error::get_stream_category());
}

} // namespace

StompTransport::StompTransport(asio::io_context& io)
    : io_(io), timer_(io), heartbeat_timer_(io), write_gate_(io) {}

StompTransport::~StompTransport() {
  close();
}

BeastSocket* StompTransport::lowest() {
  if (tls_stream_)
    return &tls_stream_->next_layer();
  return tcp_ ? tcp_.get() : nullptr;
}

void StompTransport::close() {
  error_code ignored;
  if (auto* socket = lowest())
    socket->close(ignored);
  heartbeat_timer_.cancel();
  open_ = false;
}

void StompTransport::cancel() noexcept {
  cancelled_ = true;
  interrupt();
  heartbeat_timer_.cancel();
  write_gate_.cancel();
}

void StompTransport::interrupt() noexcept {
  error_code ignored;
  if (auto* socket = lowest())
    socket->cancel(ignored);
}

asio::awaitable<MsgResult> StompTransport::open(const common::BrokerUrl& url,
                                                const std::shared_ptr<BeastTlsConfig>& tls,
                                                Clock::time_point deadline) {
  close();
  ++connection_;
  silence_.clear();
  parser_ = StompParser();
  rbuf_.clear();
  peer_ = url.text;
  error_code ec;
  asio::ip::tcp::resolver resolver(io_);
  const auto endpoints = co_await resolver.async_resolve(
      url.host, std::to_string(url.port), asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return MsgResult{MsgError::ConnectRefused,
                        "cannot resolve " + url.text + ": " + ec.message()};
  // New streams per connection: a heart-beat write of the old one may still hold it.
  tls_stream_.reset();
  tcp_.reset();
  if (url.tls) {
    if (!tls)
      co_return MsgResult{MsgError::Tls, url.text + ": no TLS settings"};
    if (!tls->error.empty())
      co_return MsgResult{MsgError::Tls, "messaging." + tls->error};
    tls_stream_ = std::make_shared<BeastTlsStream>(io_.get_executor(), tls->context);
    error_code not_address;
    asio::ip::make_address(url.host, not_address);
    // SNI names a host, never an address (RFC 6066, 3).
    if (not_address)
      SSL_set_tlsext_host_name(tls_stream_->native_handle(), url.host.c_str());
    if (tls->verify)
      tls_stream_->set_verify_callback(asio::ssl::host_name_verification(url.host));
  } else {
    tcp_ = std::make_shared<BeastSocket>(io_.get_executor());
  }
  BeastSocket& socket = *lowest();
  arm(deadline);
  co_await asio::async_connect(socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (!ec && tls_stream_)
    co_await tls_stream_->async_handshake(asio::ssl::stream_base::client,
                                          asio::redirect_error(asio::use_awaitable, ec));
  disarm();
  if (cancelled_)
    co_return MsgResult{MsgError::Cancelled, {}};
  if (ec && tls_stream_ && !timed_out_ && isTlsError(ec))
    co_return MsgResult{MsgError::Tls,
                        url.text + ": TLS handshake failed: " + tlsDetail(ec, tls_stream_.get())};
  if (ec)
    co_return MsgResult{MsgError::ConnectRefused,
                        url.text + ": " + (timed_out_ ? "connect timed out" : ec.message())};
  error_code ignored;
  socket.set_option(asio::ip::tcp::no_delay(true), ignored);
  if (tcp_)
    socket.non_blocking(true, ignored); // for peerClosed(); asynchronous operations unaffected
  open_ = true;
  co_return MsgResult{};
}

std::string StompTransport::tlsRefusal() {
  if (tls_stream_ && isTlsError(last_read_error_))
    return tlsDetail(last_read_error_, tls_stream_.get());
  return {};
}

// One non-blocking read; bytes it finds are kept for the parser. Over TLS the bytes belong to
// the TLS layer: a poll says whether the peer hung up with nothing left to read.
bool StompTransport::peerClosed() {
  if (!open_)
    return true;
  if (tls_stream_) {
    // Readable with nothing to read: the peer's FIN (polled first, so that bytes arriving in
    // between count as data).
    pollfd fd{tls_stream_->next_layer().native_handle(), POLLIN | POLLRDHUP, 0};
    if (::poll(&fd, 1, 0) <= 0)
      return false;
    error_code ec;
    const size_t pending = tls_stream_->next_layer().available(ec);
    return ec || (pending == 0 && (fd.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0);
  }
  error_code ec;
  const size_t n = tcp_->read_some(asio::buffer(chunk_), ec); // the socket is non-blocking
  if (ec == asio::error::would_block || ec == asio::error::try_again)
    return false;
  if (!ec) {
    rbuf_.append(chunk_.data(), n);
    last_received_ = Clock::now();
    return false;
  }
  return true;
}

// The timer cancels the socket at `deadline`; a generation keeps a late firing from touching
// the next operation.
void StompTransport::arm(Clock::time_point deadline) {
  timed_out_ = false;
  const uint64_t generation = ++generation_;
  timer_.expires_at(deadline);
  timer_.async_wait([this, generation](const error_code& ec) {
    if (ec || generation != generation_)
      return;
    timed_out_ = true;
    interrupt();
  });
}

void StompTransport::disarm() {
  ++generation_;
  timer_.cancel();
}

asio::awaitable<bool> StompTransport::write(const StompFrame& frame, Clock::time_point deadline) {
  wbuf_.clear();
  encodeStompFrame(frame, wbuf_);
  error_code ec;
  // A heart-beat EOL on its way: frames must not interleave with it.
  while (writing_) {
    write_gate_.expires_at(deadline);
    co_await write_gate_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_)
      co_return false;
    if (writing_ && Clock::now() >= deadline) {
      detail_ = "write timed out";
      co_return false;
    }
  }
  if (!open_) {
    detail_ = silence_.empty() ? "the connection is closed" : silence_;
    co_return false;
  }
  writing_ = true;
  arm(deadline);
  if (tls_stream_)
    co_await asio::async_write(*tls_stream_, asio::buffer(wbuf_),
                               asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await asio::async_write(*tcp_, asio::buffer(wbuf_),
                               asio::redirect_error(asio::use_awaitable, ec));
  disarm();
  writing_ = false;
  if (ec) {
    detail_ = timed_out_ ? "write timed out" : !silence_.empty() ? silence_ : ec.message();
    co_return false;
  }
  last_sent_ = Clock::now();
  co_return !cancelled_;
}

asio::awaitable<StompTransport::Read> StompTransport::readFrame(StompFrame& out,
                                                                Clock::time_point deadline) {
  for (;;) {
    if (!rbuf_.empty()) {
      size_t used = 0;
      const auto status = parser_.feed(rbuf_, used, out);
      rbuf_.erase(0, used);
      if (status == StompParser::Status::Frame)
        co_return Read::Frame;
      if (status == StompParser::Status::Error) {
        detail_ = "bad frame from " + peer_ + ": " + parser_.error();
        co_return Read::Bad;
      }
    }
    if (cancelled_)
      co_return Read::Cancelled;
    if (Clock::now() >= deadline)
      co_return Read::Timeout;
    if (!open_) {
      detail_ = silence_.empty() ? "the connection is closed" : silence_;
      co_return Read::Lost;
    }
    error_code ec;
    arm(deadline);
    const size_t n =
        tls_stream_ ? co_await tls_stream_->async_read_some(
                          asio::buffer(chunk_), asio::redirect_error(asio::use_awaitable, ec))
                    : co_await tcp_->async_read_some(asio::buffer(chunk_),
                                                     asio::redirect_error(asio::use_awaitable, ec));
    disarm();
    if (cancelled_)
      co_return Read::Cancelled;
    last_read_error_ = ec;
    if (ec) {
      if (timed_out_)
        co_return Read::Timeout;
      if (!silence_.empty())
        detail_ = silence_;
      else if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
        detail_ = "the broker closed the connection";
      else
        detail_ = ec.message();
      co_return Read::Lost;
    }
    last_received_ = Clock::now();
    seen_pending_ = 0;
    rbuf_.append(chunk_.data(), n);
  }
}

// Every `tick` an EOL goes out if nothing went out for a while, and the connection is lost
// when nothing came in for the broker's interval times the tolerance. Bytes that arrive while
// no operation reads stay in the socket: their count is the sign of life.
void StompTransport::startHeartbeat(microseconds send_every, microseconds broker_every,
                                    double tolerance, std::function<void()> on_silence) {
  send_every_ = send_every;
  broker_every_ = broker_every;
  tolerance_ = tolerance;
  silent_after_ = microseconds(int64_t(double(broker_every.count()) * tolerance));
  on_silence_ = std::move(on_silence);
  if (send_every_.count() == 0 && silent_after_.count() == 0)
    return;
  last_received_ = last_sent_ = Clock::now();
  seen_pending_ = 0;
  microseconds tick = microseconds::max();
  if (send_every_.count() > 0)
    tick = std::min(tick, send_every_ / 3);
  if (silent_after_.count() > 0)
    tick = std::min(tick, silent_after_ / 8);
  heartbeat_tick_ = std::max(tick, microseconds(milliseconds(20)));
  armHeartbeat(connection_);
}

void StompTransport::armHeartbeat(uint64_t connection) {
  heartbeat_timer_.expires_after(heartbeat_tick_);
  heartbeat_timer_.async_wait(
      [this, alive = std::weak_ptr<int>(alive_), connection](const error_code& ec) {
        if (ec || alive.expired() || connection != connection_ || !open_ || cancelled_)
          return;
        onHeartbeatTick(connection);
      });
}

void StompTransport::onHeartbeatTick(uint64_t connection) {
  const auto now = Clock::now();
  if (auto* socket = lowest()) {
    error_code ec;
    const size_t pending = socket->available(ec);
    if (!ec && pending > seen_pending_)
      last_received_ = now;
    seen_pending_ = pending;
  }
  if (silent_after_.count() > 0 && now - last_received_ >= silent_after_) {
    const auto quiet = std::chrono::duration_cast<milliseconds>(now - last_received_);
    silence_ = "no frame or heart-beat from " + peer_ + " for " + std::to_string(quiet.count()) +
               " ms (its heart-beat every " + std::to_string(broker_every_.count() / 1000) +
               " ms, times the tolerance " + std::to_string(tolerance_).substr(0, 4) + ")";
    // An operation waiting on the socket ends with the loss.
    if (on_silence_)
      on_silence_();
    close();
    return;
  }
  if (send_every_.count() > 0 && !writing_ && now - last_sent_ >= send_every_ * 2 / 3) {
    // Not awaited: the tick goes on while the EOL is out; a frame written meanwhile waits for
    // it at the write gate. The stream is kept alive by the handler.
    writing_ = true;
    last_sent_ = now;
    auto done = [this, alive = std::weak_ptr<int>(alive_)](const error_code&, size_t) {
      if (alive.expired())
        return;
      writing_ = false;
      write_gate_.cancel();
    };
    static const char kEol = '\n';
    if (tls_stream_)
      asio::async_write(
          *tls_stream_, asio::buffer(&kEol, 1),
          [keep = tls_stream_, done](const error_code& ec, size_t n) { done(ec, n); });
    else
      asio::async_write(*tcp_, asio::buffer(&kEol, 1),
                        [keep = tcp_, done](const error_code& ec, size_t n) { done(ec, n); });
  }
  armHeartbeat(connection);
}

} // namespace stampede::worker
