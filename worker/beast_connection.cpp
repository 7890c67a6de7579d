#include "worker/beast_connection.h"

#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <vector>

namespace stampede::worker {

namespace http = boost::beast::http;
using boost::system::error_code;
using tcp = asio::ip::tcp;

TransportError classifyBeastError(const error_code& ec, bool connecting) {
  if (ec == boost::beast::error::timeout)
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

std::string tlsDetail(const error_code& ec, BeastTlsStream* stream) {
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

BeastTlsConfig::BeastTlsConfig(const common::TlsSpec& spec, bool defer_system_ca)
    : verify(spec.verify) {
  // Outside a connection the errors are configuration ones: say which setting.
  const char* what = "tls";
  try {
    if (!spec.verify) {
      context.set_verify_mode(asio::ssl::verify_none);
    } else {
      context.set_verify_mode(asio::ssl::verify_peer);
      // As curl's CURLOPT_CAINFO_BLOB: the given authorities replace the system's.
      what = "tls.ca";
      if (spec.ca_pem.empty() && defer_system_ca)
        system_ca_pending = true;
      else if (spec.ca_pem.empty())
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

bool BeastTlsConfig::ready() {
  if (system_ca_pending) {
    system_ca_pending = false;
    try {
      context.set_default_verify_paths();
    } catch (const std::exception& e) {
      error = std::string("tls.ca: ") + e.what(); // as the constructor words it
    }
  }
  return error.empty();
}

void BeastConnection::closeSocket() noexcept {
  error_code ignored;
  if (tls_stream_)
    tls_stream_->next_layer().close(ignored);
  else if (tcp_)
    tcp_->close(ignored);
}

void BeastConnection::abort() noexcept {
  closeSocket();
  if (host_wait_)
    host_wait_->abort();
}

void BeastConnection::close() noexcept {
  closeSocket();
  tls_stream_.reset();
  tcp_.reset();
  connected_ = false;
}

asio::awaitable<error_code> BeastConnection::open(const common::Endpoint& endpoint,
                                                  std::chrono::microseconds timeout,
                                                  const bool& cancelled) {
  close();
  error_ = TransportError::None;
  error_code ec;
  // Where to connect: a local of the frame, not a member, so that an idle connection holds
  // no addresses.
  std::vector<tcp::endpoint> addresses;
  auto address = asio::ip::make_address(endpoint.host, ec);
  const bool address_given = !ec;
  ec.clear();
  if (address_given) {
    addresses.emplace_back(address, endpoint.port);
  } else {
    // Not asio's resolver: its lookups wait in line on one thread per io_context, and neither
    // a deadline nor cancel() ends a getaddrinfo that hangs.
    HostAnswerPtr answer = resolver_.fresh(endpoint.host);
    if (!answer) {
      if (!host_wait_)
        host_wait_ = std::make_unique<HostWait>(io_);
      answer = co_await resolver_.resolve(endpoint.host, *host_wait_);
    }
    if (cancelled)
      co_return asio::error::operation_aborted;
    error_ = TransportError::Resolve;
    if (!answer) {
      detail_ = "no answer for " + endpoint.host + " within http.timeout (" +
                std::to_string(timeout.count() / 1000) + " ms)";
      co_return asio::error::timed_out;
    }
    if (answer->addresses.empty()) {
      detail_ = endpoint.host + ": " + answer->error;
      co_return asio::error::host_not_found;
    }
    error_ = TransportError::None;
    for (const auto& a : answer->addresses)
      addresses.emplace_back(a, endpoint.port);
  }
  if (allow_) {
    // Only to addresses --allow-target allows: nothing is sent to the others.
    std::optional<asio::ip::address> refused;
    std::erase_if(addresses, [&](const tcp::endpoint& e) {
      if (allow_->allows(e.address()))
        return false;
      refused = e.address();
      return true;
    });
    if (addresses.empty()) {
      error_ = TransportError::TargetNotAllowed;
      detail_ = (address_given ? "" : endpoint.host + ": ") + allow_->refusal(*refused);
      co_return asio::error::access_denied;
    }
  }
  if (isTlsEndpoint(endpoint)) {
    if (!tls_config_.ready())
      co_return asio::ssl::error::unspecified_system_error; // the session says why
    tls_stream_ = std::make_unique<BeastTlsStream>(io_.get_executor(), tls_config_.context);
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
  if (addresses.size() == 1)
    co_await socket.async_connect(addresses[0], asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await asio::async_connect(socket, addresses, asio::redirect_error(asio::use_awaitable, ec));
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
  tls_ = isTlsEndpoint(endpoint);
  co_return error_code{};
}

size_t BeastConnection::trySend(std::string_view data, error_code& ec) {
  size_t sent = 0;
  while (sent < data.size()) {
    size_t n = tcp_->write_some(asio::buffer(data.data() + sent, data.size() - sent), ec);
    sent += n;
    if (ec)
      break;
  }
  if (ec == asio::error::would_block || ec == asio::error::try_again)
    ec.clear(); // the caller sends the rest asynchronously
  return sent;
}

} // namespace stampede::worker
