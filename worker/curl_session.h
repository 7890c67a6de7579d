// One virtual user's session on the curl client: an easy handle, reused from request to
// request, that its shard's multi handle drives. perform() resolves the host with the client's
// resolver when curl has no fresh answer, sets the request up (CurlRequestSetup), adds the
// handle to the multi and waits; the shard hands the finished transfer back (CurlTransfer).
// Load thread only.
#pragma once

#include "worker/curl_client.h"
#include "worker/curl_request.h"
#include "worker/curl_response.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace stampede::worker {

class CurlSession final : public HttpSession, private CurlTransfer {
public:
  CurlSession(CurlClient& client, CurlShard& shard);
  ~CurlSession() override;

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override;
  HeaderList lastResponseHeaders() const override { return response_.headers(); }
  std::optional<std::string_view> header(std::string_view name) const override {
    return response_.header(name);
  }
  void cancel() noexcept override;

private:
  using Waiter = asio::async_result<asio::use_awaitable_t<>, void()>::handler_type;

  void onDone(CURLcode rc) noexcept override;
  void detach() noexcept override;

  // CURLOPT_OPENSOCKETFUNCTION, with the session as its data.
  static curl_socket_t onOpenSocket(void* clientp, curlsocktype purpose,
                                    curl_sockaddr* address) noexcept;
  // Whether curl may open a connection to `address` (--allow-target); remembers a refusal.
  bool admit(const curl_sockaddr& address) noexcept;
  // Resolves the request's host name (not an address) with the client's resolver and hands
  // curl the answer; false (with `out` filled) when there is none.
  asio::awaitable<bool> resolve(const HttpRequest& request, HttpResponse& out);
  // Whether perform() needs resolve() first: a host name without a fresh answer given to curl.
  bool needsResolve(const common::Endpoint& endpoint);
  void giveAnswer(const common::Endpoint& endpoint, HostAnswerPtr answer);
  void start(Waiter waiter) noexcept;
  void complete() noexcept;
  void fill(const HttpRequest& request, HttpResponse& out);

  CurlClient* client_; // null once detached, with shard_
  CurlShard* shard_;
  CURL* easy_ = nullptr;
  CurlRequestSetup setup_; // outlives easy_, which holds its URL handle
  CurlResponse response_;
  std::optional<Waiter> waiter_;
  bool active_ = false; // the easy handle is in the multi
  bool cancelled_ = false;
  bool resolving_ = false; // waiting for the client's resolver (not curl)
  CURLcode result_ = CURLE_OK;
  std::string detail_; // why the request could not be set up or added
  char error_[CURL_ERROR_SIZE] = {};

  // Connecting (cold: per new host or connection).
  std::string host_; // the last request's host, brackets off
  bool host_is_address_ = false;
  HostAnswerPtr given_; // the answer curl holds for host_:given_port_ (CURLOPT_RESOLVE)
  std::string given_host_;
  uint16_t given_port_ = 0;
  std::string resolve_text_; // "host:port:addr,addr", what resolve_node_ points to
  curl_slist resolve_node_{};
  std::optional<HostWait> host_wait_;
  std::chrono::microseconds resolve_spent_{0}; // of the request's timeout
  std::optional<asio::ip::address> refused_;   // by --allow-target, in this request
  bool opened_ = false;                        // a connection was opened in this request
};

} // namespace stampede::worker
