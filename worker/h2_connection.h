// One HTTP/2 connection of the nghttp2 engine (worker/h2_client.cpp) and its I/O: resolve,
// connect, TLS with ALPN h2 (or h2c with prior knowledge), then bytes between the socket and
// H2Protocol, whose streams carry the sessions' requests. Load thread only.
//
// A connection reads only while a stream is open, so that an idle client leaves its io_context
// out of work, as the other engines do. Bytes go out in one write per turn of the io_context:
// streams submitted in the same turn share it.
//
// TLS is OpenSSL on the socket's descriptor (through our BIO: send() without SIGPIPE), driven by
// readiness (async_wait), as h2load does: no asio::ssl::stream, whose BIO pair and buffers cost
// 66 KiB a connection and a copy each way. A connection reads until "would block" (or
// kMaxReadsPerTurn reads, then goes on in a posted turn), then waits for readiness again.
#pragma once

#include "worker/beast_connection.h"
#include "worker/h2_protocol.h"
#include "worker/host_resolver.h"
#include "worker/http_client.h"
#include "worker/target_policy.h"

#include <boost/asio/ssl.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

namespace stampede::worker {

constexpr size_t kH2ReadBytes = 16 * 1024; // per read: one TLS record, a DATA frame

// The client's TLS settings (http.tls): the Beast engine's, with ALPN h2; shared by its
// connections.
struct H2TlsConfig : BeastTlsConfig {
  explicit H2TlsConfig(const common::TlsSpec& spec);
};

// What a connection needs of its client; outlives no load thread.
struct H2Shared {
  H2Shared(asio::io_context& io, const common::HttpSpec& spec,
           std::shared_ptr<const TargetPolicy> allow)
      : io(io), spec(spec), tls(spec.tls), resolver(io), allow(std::move(allow)) {
    settings.window = spec.h2.window;
    settings.streams = spec.h2.streams_per_connection;
    settings.memory = &memory;
  }
  asio::io_context& io;
  const common::HttpSpec& spec;
  H2Memory memory; // nghttp2 allocations of every connection here; outlives them
  H2TlsConfig tls;
  HostResolver resolver;
  std::shared_ptr<const TargetPolicy> allow;
  H2Settings settings;
  // One read buffer for the load thread's connections: nghttp2 takes each read whole (what it
  // keeps, it copies) before the next.
  std::unique_ptr<uint8_t[]> in = std::make_unique<uint8_t[]>(kH2ReadBytes);
};

class H2Connection : public std::enable_shared_from_this<H2Connection> {
public:
  H2Connection(H2Shared& shared, const common::Endpoint& endpoint);
  ~H2Connection();

  // Resolves, connects and shakes hands, within http.timeout; streams submitted meanwhile go
  // once it is up.
  void start();
  // New streams may go here (to this endpoint).
  bool alive() const { return state_ != State::Closed && !proto_.goingAway(); }
  bool usable(const common::Endpoint& e) const {
    return alive() && e.port == port_ && e.host == host_ && isTlsEndpoint(e) == tls_;
  }
  bool connecting() const { return state_ == State::Connecting; }
  // Some stream completed here before: a failure before any byte of the next one may be the
  // server closing an idle connection.
  bool reused() const { return completed_ > 0; }

  // Starts a request; its result lands in `stream` (on_closed is called).
  void submit(H2Stream& stream, const HttpRequest& request, bool own_agent, bool own_encoding);
  // The stream is not wanted any more (timeout, cancel).
  void forget(H2Stream& stream) noexcept;

private:
  enum class State { Connecting, Open, Closed };
  using Socket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
  using Result = std::pair<TransportError, std::string>;

  void closeSocket() noexcept;
  // The connection failed or ended: its streams fail so.
  void lost(TransportError error, const std::string& detail);
  void lost(const boost::system::error_code& ec);
  // Calls on_closed of the streams closed since the last call.
  void wake();

  boost::system::error_code sslError(int rc);
  size_t readSome(uint8_t* data, size_t size, boost::system::error_code& ec);
  size_t writeSome(const char* data, size_t size, boost::system::error_code& ec);

  asio::awaitable<void> connect(std::shared_ptr<H2Connection> self);
  // Why connect() failed: the error kind and detail, or None.
  asio::awaitable<Result> open();

  void scheduleFlush();
  void flush();
  void startRead();
  void readReady();

  H2Shared& shared_;
  H2Protocol proto_;
  State state_ = State::Connecting;
  bool reading_ = false;
  bool writing_ = false;
  bool flush_posted_ = false;
  bool timed_out_ = false; // the connect deadline passed
  uint64_t completed_ = 0;
  std::string out_;
  std::optional<Socket> socket_;
  SSL* ssl_ = nullptr; // TLS connections: OpenSSL on socket_'s descriptor
  asio::steady_timer connect_timer_;
  std::optional<HostWait> host_wait_;
  std::string host_;
  uint16_t port_;
  bool tls_;
  std::string authority_;
};

} // namespace stampede::worker
