#include "worker/curl_session.h"

#include "worker/http1_parser.h"
#include "worker/target_policy.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace stampede::worker {
namespace {

// curl 7.88 appends a POSTFIELDS body below this size to the request head (http.c,
// MAX_INITIAL_POST_SIZE); the wire byte count depends on it.
constexpr size_t kMaxInitialPostSize = 64 * 1024;

} // namespace

CurlSession::CurlSession(CurlClient& client, CurlShard& shard) : client_(&client), shard_(&shard) {
  easy_ = curl_easy_init();
  if (!easy_)
    throw std::runtime_error("curl_easy_init failed");
  setup_.configure(easy_, client.spec(), client.proxyEnv());
  response_.attach(easy_);
  curl_easy_setopt(easy_, CURLOPT_PRIVATE,
                   reinterpret_cast<char*>(static_cast<CurlTransfer*>(this)));
  curl_easy_setopt(easy_, CURLOPT_OPENSOCKETFUNCTION, &CurlSession::onOpenSocket);
  curl_easy_setopt(easy_, CURLOPT_OPENSOCKETDATA, this); // the session: see admit()
  curl_easy_setopt(easy_, CURLOPT_CLOSESOCKETFUNCTION, &CurlShard::onCloseSocket);
  curl_easy_setopt(easy_, CURLOPT_CLOSESOCKETDATA, &shard);
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
  shard.add(this);
}

CurlSession::~CurlSession() {
  if (shard_) {
    if (active_)
      curl_multi_remove_handle(shard_->multi(), easy_);
    shard_->remove(this);
  }
  if (easy_)
    curl_easy_cleanup(easy_);
  // A still-pending waiter is destroyed, not resumed: the coroutine it would resume refers to
  // this session. asio posts the destruction of its frames.
}

void CurlSession::detach() noexcept {
  if (resolving_) {
    cancelled_ = true;
    host_wait_->abort();
  }
  if (active_) {
    curl_multi_remove_handle(shard_->multi(), easy_);
    active_ = false;
    cancelled_ = true;
  }
  curl_easy_cleanup(easy_);
  easy_ = nullptr;
  shard_ = nullptr;
  client_ = nullptr;
  complete();
}

void CurlSession::cancel() noexcept {
  if (resolving_) {
    cancelled_ = true;
    host_wait_->abort();
    return;
  }
  if (!active_)
    return;
  // Removing a handle mid-transfer closes its connection: its state is unknown.
  curl_multi_remove_handle(shard_->multi(), easy_);
  active_ = false;
  cancelled_ = true;
  complete();
}

void CurlSession::onDone(CURLcode rc) noexcept {
  active_ = false;
  result_ = rc;
  complete();
}

void CurlSession::complete() noexcept {
  if (!waiter_)
    return;
  Waiter waiter = std::move(*waiter_);
  waiter_.reset();
  // Posted, never called here: resuming inline would run the virtual user (which may start
  // the next request or destroy this session) inside CurlShard::drain().
  asio::post(std::move(waiter));
}

void CurlSession::start(Waiter waiter) noexcept {
  waiter_.emplace(std::move(waiter));
  CURLMcode mc = curl_multi_add_handle(shard_->multi(), easy_);
  if (mc != CURLM_OK) {
    result_ = CURLE_FAILED_INIT;
    detail_ = curl_multi_strerror(mc);
    complete();
    return;
  }
  // add_handle only sets a zero timeout; the transfer starts from the timer.
  active_ = true;
}

asio::awaitable<void> CurlSession::perform(const HttpRequest& request, HttpResponse& out) {
  out.error = TransportError::None;
  out.status = 0;
  out.body = {};
  out.bytes_in = 0;
  out.bytes_out = 0;
  out.http_version = 11;
  out.detail.clear();
  if (!shard_) {
    out.error = TransportError::Cancelled;
    co_return;
  }
  if (active_ || waiter_) {
    out.error = TransportError::Protocol;
    out.detail = "perform() while a request is in flight on the session";
    co_return;
  }
  response_.reset(request.keep_body, client_->spec().max_body);
  error_[0] = '\0';
  result_ = CURLE_OK;
  cancelled_ = false;
  detail_.clear();
  refused_.reset();
  opened_ = false;
  resolve_spent_ = std::chrono::microseconds{0};
  if (request.endpoint && needsResolve(*request.endpoint) && !co_await resolve(request, out))
    co_return;
  bool ready = false;
  try {
    ready = setup_.apply(easy_, client_->spec(), request, resolve_spent_, detail_);
  } catch (const std::exception& e) {
    detail_ = e.what();
  }
  if (!ready) {
    out.error = TransportError::Protocol;
    out.detail = detail_;
    co_return;
  }
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [this](Waiter waiter) { start(std::move(waiter)); }, asio::use_awaitable);
  fill(request, out);
}

void CurlSession::fill(const HttpRequest& request, HttpResponse& out) {
  if (cancelled_) {
    out.error = TransportError::Cancelled;
    return;
  }
  if (!easy_) {
    out.error = TransportError::Cancelled;
    return;
  }
  // SIZE_DOWNLOAD counts the body as it came, before curl decodes gzip (but after it takes the
  // chunked framing off); the write callback sees it decoded.
  curl_off_t downloaded = 0;
  curl_easy_getinfo(easy_, CURLINFO_SIZE_DOWNLOAD_T, &downloaded);
  out.bytes_in = response_.headerBytes() + static_cast<uint64_t>(downloaded);
  // CURLINFO_REQUEST_SIZE counts the first send() of the request, which carries the body too
  // when curl appended it to the head; SIZE_UPLOAD counts every body byte.
  long request_size = 0;
  curl_off_t uploaded = 0;
  curl_easy_getinfo(easy_, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_getinfo(easy_, CURLINFO_SIZE_UPLOAD_T, &uploaded);
  uint64_t appended = request.body.size() < kMaxInitialPostSize
                          ? std::min<uint64_t>(uploaded, request.body.size())
                          : 0;
  out.bytes_out = static_cast<uint64_t>(request_size) + static_cast<uint64_t>(uploaded) - appended;
  if (result_ == CURLE_COULDNT_CONNECT && refused_ && !opened_) {
    // Every address of the host was outside --allow-target: no connection was opened.
    const auto& host = request.endpoint->host;
    out.error = TransportError::TargetNotAllowed;
    out.detail = (host_is_address_ ? "" : host + ": ") + client_->allow()->refusal(*refused_);
    return;
  }
  if (result_ != CURLE_OK) {
    long os_errno = 0;
    curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
    // CURLINFO_OS_ERRNO can be the previous transfer's: a socket() that failed since wins.
    if (result_ == CURLE_COULDNT_CONNECT && client_->sockets().lastOpenErrno() != 0)
      os_errno = client_->sockets().lastOpenErrno();
    out.error = curlErrorKind(result_, os_errno);
    if (response_.bodyTooLarge() || result_ == CURLE_FILESIZE_EXCEEDED) {
      out.error = TransportError::BodyTooLarge;
      out.detail = "body over http.max_body (" + std::to_string(response_.maxBody()) + " bytes)";
    } else if (response_.headTooLarge()) {
      out.error = TransportError::Protocol;
      out.detail = "response head over " +
                   std::to_string(Http1ResponseParser::kMaxHeadBytes / 1024) + " KiB";
    } else if (!detail_.empty())
      out.detail = detail_;
    else if (error_[0])
      out.detail = error_;
    else
      out.detail = curl_easy_strerror(result_);
    return;
  }
  long status = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &status);
  out.status = static_cast<int>(status);
  out.body = response_.body();
  long version = 0;
  curl_easy_getinfo(easy_, CURLINFO_HTTP_VERSION, &version);
  out.http_version = version == CURL_HTTP_VERSION_2_0 ? 20 : 11;
}

bool CurlSession::admit(const curl_sockaddr& address) noexcept {
  const TargetPolicy* allow = client_->allow();
  if (!allow) {
    opened_ = true;
    return true;
  }
  asio::ip::address a;
  if (address.family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&address.addr);
    a = asio::ip::address_v4(ntohl(in->sin_addr.s_addr));
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&address.addr);
    asio::ip::address_v6::bytes_type bytes;
    std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
    a = asio::ip::address_v6(bytes, in6->sin6_scope_id);
  }
  if (!allow->allows(a)) {
    refused_ = a;
    return false;
  }
  opened_ = true;
  return true;
}

bool CurlSession::needsResolve(const common::Endpoint& endpoint) {
  std::string_view host = endpoint.host;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (host != host_) {
    host_.assign(host);
    boost::system::error_code ec;
    asio::ip::make_address(host_, ec);
    host_is_address_ = !ec;
  }
  if (host_is_address_)
    return false;
  HostAnswerPtr answer = client_->resolver().fresh(host_);
  if (!answer || answer->addresses.empty())
    return true;
  giveAnswer(endpoint, std::move(answer));
  return false;
}

asio::awaitable<bool> CurlSession::resolve(const HttpRequest& request, HttpResponse& out) {
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = request.timeout.count() > 0 ? started + request.timeout
                                                    : std::chrono::steady_clock::time_point::max();
  CurlClient& client = *client_;
  if (!host_wait_)
    host_wait_.emplace(client.io());
  resolving_ = true;
  HostAnswerPtr answer = co_await client.resolver().resolve(host_, *host_wait_, deadline);
  resolving_ = false;
  resolve_spent_ = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  if (cancelled_ || !shard_) {
    out.error = TransportError::Cancelled;
    co_return false;
  }
  if (!answer) {
    out.error = TransportError::Resolve;
    out.detail = "no answer for " + host_ + " within the request's timeout (" +
                 std::to_string(request.timeout.count() / 1000) + " ms)";
    co_return false;
  }
  if (answer->addresses.empty()) {
    out.error = TransportError::Resolve;
    out.detail = host_ + ": " + answer->error;
    co_return false;
  }
  giveAnswer(*request.endpoint, std::move(answer));
  co_return true;
}

void CurlSession::giveAnswer(const common::Endpoint& endpoint, HostAnswerPtr answer) {
  if (answer == given_ && endpoint.port == given_port_ && host_ == given_host_)
    return;
  // "host:port:addr,[v6addr]": replaces what the multi handle's DNS cache held for host:port,
  // as a permanent entry (curl never expires or re-resolves it; we give it a newer answer).
  resolve_text_ = host_ + ":" + std::to_string(endpoint.port) + ":";
  for (size_t i = 0; i < answer->addresses.size(); ++i) {
    const auto& a = answer->addresses[i];
    if (i)
      resolve_text_ += ',';
    resolve_text_ += a.is_v6() ? "[" + a.to_string() + "]" : a.to_string();
  }
  resolve_node_.data = resolve_text_.data();
  resolve_node_.next = nullptr;
  curl_easy_setopt(easy_, CURLOPT_RESOLVE, &resolve_node_);
  given_ = std::move(answer);
  given_host_ = host_;
  given_port_ = endpoint.port;
}

curl_socket_t CurlSession::onOpenSocket(void* clientp, curlsocktype purpose,
                                        curl_sockaddr* address) noexcept {
  auto* session = static_cast<CurlSession*>(clientp);
  CurlShard* shard = session->shard_;
  if (!shard || purpose != CURLSOCKTYPE_IPCXN || address->socktype != SOCK_STREAM ||
      (address->family != AF_INET && address->family != AF_INET6))
    return CURL_SOCKET_BAD;
  // curl then tries the host's next address, or fails with COULDNT_CONNECT (fill() tells).
  if (!session->admit(*address))
    return CURL_SOCKET_BAD;
  try {
    auto entry = session->client_->sockets().open(*shard, *address);
    return entry ? entry->fd : CURL_SOCKET_BAD;
  } catch (...) {
    return CURL_SOCKET_BAD;
  }
}

} // namespace stampede::worker
