#include "worker/h2_connection.h"

#include <algorithm>
#include <cstring>

#include <sys/socket.h>

namespace stampede::worker {
namespace {

using tcp = asio::ip::tcp;
using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

constexpr int kMaxReadsPerTurn = 16; // reads in one turn before others get theirs

// An OpenSSL error in one line, as Asio's ssl category words it.
std::string sslDetail(unsigned long code) {
  return error_code(int(code), asio::error::get_ssl_category()).message();
}

// OpenSSL's socket I/O, as its socket BIO's but for send() with MSG_NOSIGNAL: its write() to a
// connection the server reset raises SIGPIPE, which would end the process (Asio's own sends
// pass the flag).
int bioFd(BIO* bio) {
  return int(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
}
bool retryable(int error) {
  return error == EAGAIN || error == EWOULDBLOCK || error == EINTR;
}
int bioWrite(BIO* bio, const char* data, int size) {
  const ssize_t n = ::send(bioFd(bio), data, size_t(size), MSG_NOSIGNAL);
  BIO_clear_retry_flags(bio);
  if (n < 0 && retryable(errno))
    BIO_set_retry_write(bio);
  return int(n);
}
int bioRead(BIO* bio, char* data, int size) {
  const ssize_t n = ::recv(bioFd(bio), data, size_t(size), 0);
  BIO_clear_retry_flags(bio);
  if (n < 0 && retryable(errno))
    BIO_set_retry_read(bio);
  return int(n);
}
long bioCtrl(BIO*, int command, long, void*) {
  return command == BIO_CTRL_FLUSH ? 1 : 0;
}
int bioPuts(BIO* bio, const char* text) {
  return bioWrite(bio, text, int(std::strlen(text)));
}
// A BIO on `fd` (not closed with it), or null.
BIO* socketBio(int fd) {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "stampede socket");
    if (m) {
      BIO_meth_set_write(m, bioWrite);
      BIO_meth_set_read(m, bioRead);
      BIO_meth_set_puts(m, bioPuts);
      BIO_meth_set_ctrl(m, bioCtrl);
    }
    return m;
  }();
  BIO* bio = method ? BIO_new(method) : nullptr;
  if (bio) {
    BIO_set_data(bio, reinterpret_cast<void*>(intptr_t(fd)));
    BIO_set_init(bio, 1);
  }
  return bio;
}

TransportError classifyConnect(const error_code& ec) {
  if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system)
    return TransportError::GeneratorFdExhausted;
  if (ec == asio::error::connection_refused)
    return TransportError::ConnectRefused;
  if (ec.category() == asio::error::get_ssl_category() ||
      ec.category() == asio::ssl::error::get_stream_category())
    return TransportError::Tls;
  return TransportError::Connect;
}

} // namespace

H2TlsConfig::H2TlsConfig(const common::TlsSpec& spec) : BeastTlsConfig(spec) {
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(context.native_handle(), kAlpn, sizeof kAlpn);
}

H2Connection::H2Connection(H2Shared& shared, const common::Endpoint& endpoint)
    : shared_(shared), proto_(shared.settings), connect_timer_(shared.io), host_(endpoint.host),
      port_(endpoint.port), tls_(isTlsEndpoint(endpoint)) {
  authority_ = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  if (port_ != (tls_ ? 443 : 80))
    authority_ += ":" + std::to_string(port_);
}

H2Connection::~H2Connection() {
  closeSocket();
  SSL_free(ssl_);
}

void H2Connection::start() {
  asio::co_spawn(shared_.io, connect(shared_from_this()), asio::detached);
}

void H2Connection::submit(H2Stream& stream, const HttpRequest& request, bool own_agent,
                          bool own_encoding) {
  const bool ok =
      proto_.submit(stream, request.method, tls_ ? "https" : "http", authority_, request.target,
                    request.headers, request.body, !own_agent, !own_encoding);
  if (!ok) {
    if (stream.on_closed)
      stream.on_closed();
    return;
  }
  if (state_ == State::Open) {
    // The wait first: the answer to what the flush sends cannot slip past it.
    startRead();
    scheduleFlush();
  }
}
void H2Connection::forget(H2Stream& stream) noexcept {
  proto_.forget(stream);
  if (proto_.openStreams() == 0 && (state_ == State::Connecting || reading_)) {
    // Nothing else waits here: do not leave a read or a connect pending (the run's end waits
    // for the io_context to run out of work).
    state_ = State::Closed;
    closeSocket();
  } else if (state_ == State::Open) {
    scheduleFlush();
  }
}

void H2Connection::closeSocket() noexcept {
  error_code ignored;
  if (socket_)
    socket_->close(ignored);
  if (host_wait_)
    host_wait_->abort();
}

void H2Connection::lost(TransportError error, const std::string& detail) {
  state_ = State::Closed;
  closeSocket();
  connect_timer_.cancel();
  proto_.fail(error, detail);
  wake();
}
void H2Connection::lost(const error_code& ec) {
  lost(TransportError::Reset, ec == asio::error::eof ? "the server closed the connection"
                                                     : "connection lost: " + ec.message());
}

void H2Connection::wake() {
  auto& closed = proto_.closed();
  if (closed.empty())
    return;
  wakeOrder(closed);
  // on_closed only sets flags and posts its session's resumption; nothing it does reaches
  // this list.
  for (H2Stream* stream : closed) {
    if (stream->error == TransportError::None)
      ++completed_;
    if (stream->on_closed)
      stream->on_closed();
  }
  closed.clear();
}

// Why an SSL call returned `rc`: would_block when it waits for the socket, eof when the
// server closed, else the error.
error_code H2Connection::sslError(int rc) {
  const int kind = SSL_get_error(ssl_, rc);
  if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE)
    return asio::error::would_block;
  const int saved_errno = errno;
  const unsigned long code = ERR_get_error();
  ERR_clear_error(); // SSL_get_error reads the thread's queue: leave it empty
  if (kind == SSL_ERROR_SSL && code != 0 &&
      ERR_GET_REASON(code) != SSL_R_UNEXPECTED_EOF_WHILE_READING)
    return error_code(int(code), asio::error::get_ssl_category());
  if (kind == SSL_ERROR_SYSCALL && rc < 0 && saved_errno != 0)
    return error_code(saved_errno, asio::error::get_system_category());
  return asio::error::eof; // close_notify, or the socket closed under the record layer
}
// Bytes read into `data` (0 with `ec` set: would_block, eof, or the error).
size_t H2Connection::readSome(uint8_t* data, size_t size, error_code& ec) {
  if (!ssl_)
    return socket_->read_some(asio::buffer(data, size), ec);
  const int rc = SSL_read(ssl_, data, int(size));
  if (rc > 0)
    return size_t(rc);
  ec = sslError(rc);
  return 0;
}
size_t H2Connection::writeSome(const char* data, size_t size, error_code& ec) {
  if (!ssl_)
    return socket_->write_some(asio::buffer(data, size), ec);
  const int rc = SSL_write(ssl_, data, int(std::min<size_t>(size, 1 << 30)));
  if (rc > 0)
    return size_t(rc);
  ec = sslError(rc);
  return 0;
}

void H2Connection::scheduleFlush() {
  if (shared_.settings.streams <= 1) {
    flush();
    return;
  }
  if (flush_posted_)
    return;
  flush_posted_ = true;
  // The sessions woken in one turn (H2Client's one posted turn for them all) submit before this
  // runs: their requests share one write.
  asio::post(shared_.io, [self = shared_from_this()] {
    self->flush_posted_ = false;
    self->flush();
  });
}

void H2Connection::flush() {
  if (state_ != State::Open || writing_)
    return;
  proto_.send(out_);
  wake(); // requests nghttp2 could not send (after GOAWAY) closed just now
  if (proto_.finished() && proto_.goingAway() && proto_.openStreams() == 0 && out_.empty()) {
    state_ = State::Closed;
    closeSocket();
    return;
  }
  if (out_.empty())
    return;
  // The socket buffer is usually empty: send without waiting.
  error_code ec;
  size_t sent = 0;
  while (sent < out_.size()) {
    const size_t n = writeSome(out_.data() + sent, out_.size() - sent, ec);
    if (ec)
      break;
    sent += n;
  }
  out_.erase(0, sent);
  if (ec && ec != asio::error::would_block) {
    lost(ec);
    return;
  }
  if (out_.empty())
    return;
  // Full: the rest once the socket takes more (OpenSSL keeps the record it could not send
  // and takes the same bytes again).
  writing_ = true;
  socket_->async_wait(Socket::wait_write, [self = shared_from_this()](const error_code& ec) {
    self->writing_ = false;
    if (self->state_ == State::Closed)
      return;
    if (ec) {
      self->lost(ec);
      return;
    }
    self->flush();
  });
}

void H2Connection::startRead() {
  if (reading_ || state_ != State::Open || proto_.openStreams() == 0)
    return;
  reading_ = true;
  socket_->async_wait(Socket::wait_read, [self = shared_from_this()](const error_code& ec) {
    self->reading_ = false;
    if (self->state_ == State::Closed)
      return;
    if (ec) {
      self->lost(ec);
      return;
    }
    self->readReady();
  });
}

// Reads what is there, until the socket would block or for kMaxReadsPerTurn reads: over TLS
// a read returns one record, often one response; the streams those wake then send their next
// requests in one write.
void H2Connection::readReady() {
  uint8_t* in = shared_.in.get();
  error_code ec;
  bool ok = true;
  for (int i = 0; ok && i < kMaxReadsPerTurn; ++i) {
    const size_t n = readSome(in, kH2ReadBytes, ec);
    if (ec)
      break;
    ok = proto_.receive(in, n);
  }
  wake();
  if (!ok) {
    state_ = State::Closed;
    closeSocket();
    return;
  }
  if (ec && ec != asio::error::would_block) {
    lost(ec);
    return;
  }
  flush();
  if (state_ != State::Closed && !ec && proto_.openStreams() > 0) {
    // Stopped short of "would block": no readiness comes for what is left; read it after the
    // other connections had their turn.
    reading_ = true;
    asio::post(shared_.io, [self = shared_from_this()] {
      self->reading_ = false;
      if (self->state_ != State::Closed)
        self->readReady();
    });
  } else if (proto_.openStreams() > 0) {
    startRead();
  } else if (proto_.goingAway() && !writing_) {
    state_ = State::Closed;
    closeSocket();
  }
}

asio::awaitable<void> H2Connection::connect(std::shared_ptr<H2Connection> self) {
  // One budget for resolve, connect and handshake, as on the other engines.
  connect_timer_.expires_after(shared_.spec.timeout);
  connect_timer_.async_wait([this, self](const error_code& ec) {
    if (!ec && state_ == State::Connecting) {
      timed_out_ = true;
      closeSocket();
    }
  });
  auto [error, detail] = co_await open();
  connect_timer_.cancel();
  if (state_ == State::Closed)
    co_return; // nobody waits any more
  if (error != TransportError::None) {
    lost(error, detail);
    co_return;
  }
  state_ = State::Open;
  startRead();
  flush();
}

asio::awaitable<H2Connection::Result> H2Connection::open() {
  auto timeout = [&]() -> Result {
    return {TransportError::Timeout, "no connection within http.timeout (" +
                                         std::to_string(shared_.spec.timeout.count() / 1000) +
                                         " ms)"};
  };
  std::vector<tcp::endpoint> addresses;
  error_code ec;
  auto address = asio::ip::make_address(host_, ec);
  const bool address_given = !ec;
  if (address_given) {
    addresses.emplace_back(address, port_);
  } else {
    HostAnswerPtr answer = shared_.resolver.fresh(host_);
    if (!answer) {
      host_wait_.emplace(shared_.io);
      answer = co_await shared_.resolver.resolve(host_, *host_wait_,
                                                 SteadyClock::now() + shared_.spec.timeout);
    }
    if (state_ == State::Closed)
      co_return Result{TransportError::Cancelled, ""};
    if (!answer)
      co_return Result{TransportError::Resolve,
                       "no answer for " + host_ + " within http.timeout (" +
                           std::to_string(shared_.spec.timeout.count() / 1000) + " ms)"};
    if (answer->addresses.empty())
      co_return Result{TransportError::Resolve, host_ + ": " + answer->error};
    for (const auto& a : answer->addresses)
      addresses.emplace_back(a, port_);
  }
  if (shared_.allow) {
    // Only to addresses --allow-target allows: nothing is sent to the others.
    std::optional<asio::ip::address> refused;
    std::erase_if(addresses, [&](const tcp::endpoint& e) {
      if (shared_.allow->allows(e.address()))
        return false;
      refused = e.address();
      return true;
    });
    if (addresses.empty())
      co_return Result{TransportError::TargetNotAllowed,
                       (address_given ? "" : host_ + ": ") + shared_.allow->refusal(*refused)};
  }
  if (tls_ && !shared_.tls.error.empty())
    co_return Result{TransportError::Tls, shared_.tls.error};
  socket_.emplace(shared_.io.get_executor());
  co_await asio::async_connect(*socket_, addresses, asio::redirect_error(asio::use_awaitable, ec));
  if (timed_out_)
    co_return timeout();
  if (ec)
    co_return Result{classifyConnect(ec), ec.message()};
  error_code ignored;
  socket_->set_option(tcp::no_delay(true), ignored);
  socket_->non_blocking(true, ignored);
  if (!tls_)
    co_return Result{TransportError::None, ""};

  ssl_ = SSL_new(shared_.tls.context.native_handle());
  BIO* bio = ssl_ ? socketBio(int(socket_->native_handle())) : nullptr;
  if (!bio) {
    const unsigned long code = ERR_get_error();
    ERR_clear_error();
    co_return Result{TransportError::Tls, "TLS: " + sslDetail(code)};
  }
  SSL_set_bio(ssl_, bio, bio); // ssl_ owns it
  // Partial writes: a full socket leaves the rest of out_ for later, which may move.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // One read() for what is there, not two per record (its header, then the rest): a read
  // drains OpenSSL's buffer too, as readReady() reads until SSL_read wants more.
  SSL_set_read_ahead(ssl_, 1);
  // SNI names a host, never an address (RFC 6066, 3).
  if (!address_given)
    SSL_set_tlsext_host_name(ssl_, host_.c_str());
  // The certificate must name the host (or the address); the context verifies the chain.
  if (shared_.tls.verify)
    SSL_set1_host(ssl_, host_.c_str());
  SSL_set_connect_state(ssl_);
  ERR_clear_error();
  for (;;) {
    const int rc = SSL_do_handshake(ssl_);
    if (rc == 1)
      break;
    const int kind = SSL_get_error(ssl_, rc);
    if (kind == SSL_ERROR_WANT_READ || kind == SSL_ERROR_WANT_WRITE) {
      co_await socket_->async_wait(kind == SSL_ERROR_WANT_READ ? Socket::wait_read
                                                               : Socket::wait_write,
                                   asio::redirect_error(asio::use_awaitable, ec));
      if (timed_out_)
        co_return timeout();
      if (ec)
        co_return Result{state_ == State::Closed ? TransportError::Cancelled : TransportError::Tls,
                         ec.message()};
      continue;
    }
    std::string detail = sslError(rc).message();
    const long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK)
      detail += std::string(": ") + X509_verify_cert_error_string(verify);
    co_return Result{state_ == State::Closed ? TransportError::Cancelled : TransportError::Tls,
                     detail};
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_length = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_length);
  if (std::string_view(reinterpret_cast<const char*>(alpn), alpn_length) != "h2")
    co_return Result{TransportError::Protocol, "the server did not choose h2 by ALPN"};
  co_return Result{TransportError::None, ""};
}

} // namespace stampede::worker
