// The connection under one Beast session (worker/beast_client.cpp): resolve the host
// (HostResolver), keep to --allow-target, connect over TCP, shake hands for https, close. The
// request exchange over it (serialise, send, read, parse, timeouts) is the session's. Used on
// its load thread only.
#pragma once

#include "worker/host_resolver.h"
#include "worker/http_client.h"
#include "worker/target_policy.h"

#include <boost/asio/ssl.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stampede::worker {

// The io_context's own executor, not the type-erased any_io_executor: cheaper per operation.
using BeastSocket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
using BeastTlsStream = asio::ssl::stream<BeastSocket>;

// The error kind of a failed connect, send or read (`connecting`: before the connection was up).
TransportError classifyBeastError(const boost::system::error_code& ec, bool connecting);
// A TLS error in one line, with the reason the peer's certificate was refused if it was.
std::string tlsDetail(const boost::system::error_code& ec, BeastTlsStream* stream);

// Endpoint::tls() without a strlen per call.
inline bool isTlsEndpoint(const common::Endpoint& e) {
  return std::string_view(e.scheme) == "https";
}

// The client's TLS settings (http.tls), shared by its sessions. With `defer_system_ca`, the
// system's CA store (verify: true without tls.ca: some 20 ms of CPU per load thread) is loaded
// by the first TLS connection (ready()), so that a run that never meets https never pays for it.
struct BeastTlsConfig {
  explicit BeastTlsConfig(const common::TlsSpec& spec, bool defer_system_ca = false);
  // Before every TLS connection: loads a deferred CA store, once. False when the settings are
  // unusable (`error` says why).
  bool ready();
  asio::ssl::context context{asio::ssl::context::tls_client};
  bool verify = true;
  std::string error; // why the settings are unusable (a bad PEM): every TLS connection fails so
  bool system_ca_pending = false; // deferred, not loaded yet
};

class BeastConnection {
public:
  BeastConnection(asio::io_context& io, BeastTlsConfig& tls, HostResolver& resolver,
                  const TargetPolicy* allow)
      : io_(io), tls_config_(tls), resolver_(resolver), allow_(allow) {}

  // Up and to this endpoint (host, port and scheme), so that a request may reuse it.
  bool connectedTo(const common::Endpoint& e) const {
    return connected_ && e.port == port_ && e.host == host_ && isTlsEndpoint(e) == tls_;
  }
  // Closes any connection, then resolves, connects and, for https, shakes hands. The caller
  // bounds it by `timeout` (abort() when it passes, or on a cancel, which sets `cancelled`:
  // read after the resolve wait); `timeout` is named in the error detail.
  asio::awaitable<boost::system::error_code>
  open(const common::Endpoint& endpoint, std::chrono::microseconds timeout, const bool& cancelled);
  // Aborts the operation in flight (socket closed, resolve wait ended); the connection's
  // state is unknown afterwards, so close() it before another request.
  void abort() noexcept;
  void close() noexcept;

  // Sends what of `data` the socket takes without waiting (usually all of it) and returns how
  // much; "would block" is not an error. Plain TCP only.
  size_t trySend(std::string_view data, boost::system::error_code& ec);

  BeastSocket* tcp() { return tcp_ ? &*tcp_ : nullptr; }
  BeastTlsStream* tls() { return tls_stream_.get(); }
  const BeastTlsConfig& tlsConfig() const { return tls_config_; }
  asio::io_context& io() const { return io_; }
  // Why open() failed when its error code does not say it all (a resolve error, an address
  // outside --allow-target), with its detail; TransportError::None otherwise.
  TransportError error() const { return error_; }
  const std::string& detail() const { return detail_; }

private:
  void closeSocket() noexcept;
  BeastSocket& lowest() { return tls_stream_ ? tls_stream_->next_layer() : *tcp_; }

  bool connected_ = false;
  bool tls_ = false;
  uint16_t port_ = 0;
  std::optional<BeastSocket> tcp_;
  std::string host_;
  std::unique_ptr<BeastTlsStream> tls_stream_; // TLS connections only
  // Connecting (cold: once per connection).
  asio::io_context& io_;
  BeastTlsConfig& tls_config_;
  HostResolver& resolver_;
  const TargetPolicy* allow_;           // --allow-target, or nullptr
  std::unique_ptr<HostWait> host_wait_; // after the first host name (none for an address)
  TransportError error_ = TransportError::None;
  std::string detail_;
};

} // namespace stampede::worker
