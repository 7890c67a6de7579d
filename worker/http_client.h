// The seam between the load engine and an HTTP implementation: Boost.Beast (HTTP/1.1, the
// fast default) or libcurl (`http.engine: curl`). An HttpClient belongs to one load thread
// and its io_context; each virtual user owns one HttpSession (its keep-alive connection).
// Every call is made on that load thread.
#pragma once

#include "common/asio.h"
#include "common/error_context.h"
#include "common/scenario.h"

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stampede::worker {

// Why a request got no HTTP response. The kind names are the report's error kinds.
enum class TransportError {
  None,
  Resolve,        // "resolve": no address, or none within the timeout (worker/host_resolver)
  ConnectRefused, // "connect_refused"
  Connect,        // "connect" (unreachable, other connect failures)
  Timeout,        // "timeout": http.timeout elapsed
  Reset,          // "reset": the peer closed or reset the connection mid-request
  Tls,            // "tls"
  Protocol,       // "protocol": a response we could not parse (or a head over kMaxHeadBytes)
  BodyTooLarge,   // "body_too_large": a body the run reads is over http.max_body
  Cancelled,      // the run halted while the request was in flight: not an error
  // "generator_fd_exhausted": this process is out of file descriptors (EMFILE/ENFILE when
  // opening a connection): the load generator's own failure, not the target's.
  GeneratorFdExhausted,
  // "target_not_allowed": every address of the host is outside worker --allow-target
  TargetNotAllowed,
  // HTTP/2 (the nghttp2 engine): "stream_reset", the server reset the stream (RST_STREAM, its
  // code in the detail); "refused_stream", RST_STREAM REFUSED_STREAM; "goaway", the server
  // sent GOAWAY with an error code while the request was in flight.
  StreamReset,
  RefusedStream,
  GoAway,
};
const char* errorKindName(TransportError e);

using common::HeaderList;

// A request as the engine rendered it. Views stay valid until perform() completes.
struct HttpRequest {
  std::string_view method; // "GET"
  const common::Endpoint* endpoint = nullptr;
  std::string_view target;             // origin-form: "/path?query"
  const HeaderList* headers = nullptr; // rendered, http.headers then the step's
  std::string_view body;
  std::chrono::microseconds timeout{0};
  // Whether the run reads the response body (expect.body_contains, expect.json, a json or
  // regex capture). Then it is kept whole, up to http.max_body (over it: BodyTooLarge).
  // Otherwise only its first kBodyExcerptBytes are kept, for an error report, and the rest is
  // counted and discarded, whatever its length.
  bool keep_body = true;
};

// What of a body nobody reads is kept: the first error's excerpt shows this much.
constexpr size_t kBodyExcerptBytes = 1024;

struct HttpResponse {
  TransportError error = TransportError::None;
  int status = 0; // 0 when error != None
  // Decoded (gzip); valid until the next perform() on the same session. Without keep_body, at
  // most its first kBodyExcerptBytes (decoded as far as they go).
  std::string_view body;
  int http_version = 11;  // 11 for HTTP/1.1, 20 for HTTP/2
  uint64_t bytes_in = 0;  // on the wire: status line, headers and body as received
  uint64_t bytes_out = 0; // on the wire
  std::string detail;     // a human-readable reason for transport errors (cold path)
};

// Told once when a request that HttpSession::start() began is complete (its response filled
// in), on the load thread. `error`: an exception the request raised (perform() would have).
class HttpCompletion {
public:
  virtual void complete(std::exception_ptr error) = 0;

protected:
  ~HttpCompletion() = default;
};

class HttpSession {
public:
  virtual ~HttpSession() = default;
  // Sends one request and waits for the whole response. Never throws: failures are in
  // `out.error`. Reconnects as needed (closed keep-alive, another endpoint).
  virtual asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) = 0;
  // perform() without a coroutine frame, where the session can (Beast: plain HTTP on a
  // connection that is open): starts the request and returns true; `done` is told later, never
  // from within start(). False: nothing was started, perform() it. A frame per request in
  // flight is cold memory per virtual user at thousands of users.
  virtual bool start(const HttpRequest& /*request*/, HttpResponse& /*out*/,
                     HttpCompletion& /*done*/) {
    return false;
  }
  // Headers of the last response, for error reports only (cold path).
  virtual HeaderList lastResponseHeaders() const = 0;
  // The value of the last response's first header of that name (case-insensitive), for
  // captures, expectations and redirects; valid until the next perform().
  virtual std::optional<std::string_view> header(std::string_view name) const = 0;
  // Aborts the request in flight, if any: perform() completes with Cancelled. Idempotent.
  virtual void cancel() noexcept = 0;
};

class HttpClient {
public:
  virtual ~HttpClient() = default;
  virtual std::unique_ptr<HttpSession> newSession() = 0;
};

class TargetPolicy;

// `allow`: when set (worker --allow-target, names resolved), a connection is opened only to an
// address it allows; nothing is sent elsewhere. Checked once per new connection.
std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec,
                                            std::shared_ptr<const TargetPolicy> allow = nullptr);
// `defer_system_ca`: the scenario names no https URL (a redirect may still lead to one), so the
// system's CA store is loaded by the first TLS connection, if any, not up front.
std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec,
                                            std::shared_ptr<const TargetPolicy> allow,
                                            bool defer_system_ca);
// HTTP/2 on libnghttp2 (worker/h2_client.cpp): http.h2.streams_per_connection sessions share
// one connection as concurrent streams.
std::unique_ptr<HttpClient> makeH2Client(asio::io_context& io, const common::HttpSpec& spec,
                                         std::shared_ptr<const TargetPolicy> allow = nullptr);
std::unique_ptr<HttpClient> makeCurlClient(asio::io_context& io, const common::HttpSpec& spec,
                                           std::shared_ptr<const TargetPolicy> allow = nullptr);

} // namespace stampede::worker
