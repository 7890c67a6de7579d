// The libcurl HTTP client (`http.engine: curl`): HTTP/1.1, HTTP/2 over TLS via ALPN or h2c
// with prior knowledge, TLS and gzip decoding by curl, on the load thread's io_context. It
// owns what its sessions share: the shards (multi handles) that drive them, the socket table,
// and the host resolver. makeCurlClient() (worker/http_client.h) makes one. Load thread only.
#pragma once

#include "worker/curl_driver.h"
#include "worker/host_resolver.h"
#include "worker/http_client.h"

#include <memory>
#include <vector>

namespace stampede::worker {

class TargetPolicy;

class CurlClient final : public HttpClient {
public:
  CurlClient(asio::io_context& io, const common::HttpSpec& spec,
             std::shared_ptr<const TargetPolicy> allow);
  ~CurlClient() override;

  // A session on the first shard with room (shards are made on demand and kept: a multi handle
  // and a timer are cheap, and they hold the idle connections).
  std::unique_ptr<HttpSession> newSession() override;

  const common::HttpSpec& spec() const { return spec_; }
  HostResolver& resolver() { return resolver_; }
  const TargetPolicy* allow() const { return allow_.get(); }
  asio::io_context& io() { return io_; }
  CurlSockets& sockets() { return sockets_; }
  // Whether the environment named a proxy when the client was made (proxyInEnvironment()).
  bool proxyEnv() const { return proxy_env_; }

private:
  asio::io_context& io_;
  const common::HttpSpec& spec_;
  // Not curl's threaded resolver: removing a handle that is resolving joins its thread, so a
  // lookup that hangs blocks the load thread (a timeout, a halt) until getaddrinfo gives up.
  // curl gets our answers through CURLOPT_RESOLVE and never resolves a name itself.
  HostResolver resolver_;
  std::shared_ptr<const TargetPolicy> allow_;
  CurlSockets sockets_; // outlives the shards: cleaning a multi up closes its sockets
  std::vector<std::unique_ptr<CurlShard>> shards_;
  bool proxy_env_;
};

} // namespace stampede::worker
