#include "worker/curl_client.h"

#include "worker/curl_memory.h"
#include "worker/curl_request.h"
#include "worker/curl_session.h"
#include "worker/target_policy.h"

namespace stampede::worker {

CurlClient::CurlClient(asio::io_context& io, const common::HttpSpec& spec,
                       std::shared_ptr<const TargetPolicy> allow)
    : io_(io), spec_(spec), resolver_(io), allow_(std::move(allow)), sockets_(io),
      proxy_env_(proxyInEnvironment()) {
  curlGlobalInit();
}

CurlClient::~CurlClient() {
  for (auto& shard : shards_)
    shard->shutdown();
  sockets_.closeAll();
}

std::unique_ptr<HttpSession> CurlClient::newSession() {
  CurlShard* target = nullptr;
  for (auto& shard : shards_) {
    if (shard->size() < kShardSize) {
      target = shard.get();
      break;
    }
  }
  if (!target) {
    shards_.push_back(std::make_unique<CurlShard>(sockets_, io_));
    target = shards_.back().get();
  }
  return std::make_unique<CurlSession>(*this, *target);
}

std::unique_ptr<HttpClient> makeCurlClient(asio::io_context& io, const common::HttpSpec& spec,
                                           std::shared_ptr<const TargetPolicy> allow) {
  return std::make_unique<CurlClient>(io, spec, std::move(allow));
}

} // namespace stampede::worker
