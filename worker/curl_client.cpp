// HTTP on libcurl's multi_socket API, driven by the load thread's io_context: asio owns the
// sockets and the timers, curl owns the protocol (HTTP/1.1; HTTP/2 over TLS via ALPN, or h2c with
// prior knowledge), TLS and gzip decoding. Easy handles are sharded over multi handles of at most
// kShardSize because curl's connection-reuse scan is linear in the size of a multi handle (one
// multi with 8,000 handles fell to 7k req/s).
#include "worker/gzip_decoder.h"
#include "worker/host_resolver.h"
#include "worker/http1_parser.h"
#include "worker/http_client.h"
#include "worker/target_policy.h"

#include <curl/curl.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <strings.h>
#include <unistd.h>

#ifndef STAMPEDE_VERSION
#define STAMPEDE_VERSION "dev"
#endif

namespace stampede::worker {
namespace {

using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr size_t kShardSize = 64;
// Near a typical API response; curl's default is the same, but we say it so nobody raises it
// (it is allocated per easy handle).
constexpr long kBufferSize = 16 * 1024;
// curl 7.88 appends a POSTFIELDS body below this size to the request head (http.c,
// MAX_INITIAL_POST_SIZE); the wire byte count depends on it.
constexpr size_t kMaxInitialPostSize = 64 * 1024;
constexpr std::string_view kUserAgent = "User-Agent: stampede/" STAMPEDE_VERSION;

using Waiter = asio::async_result<asio::use_awaitable_t<>, void()>::handler_type;

void globalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// Whether the environment names a proxy for curl to use (or to avoid). Without one, curl is told
// "no proxy" outright: else it reads five environment variables per transfer (getenv scans the
// whole environment: 5 % of the instructions of a request). Read once: the environment of a
// running worker does not change.
bool proxyInEnvironment() {
  static const bool any = [] {
    for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                             "ALL_PROXY", "no_proxy", "NO_PROXY"})
      if (std::getenv(name))
        return true;
    return false;
  }();
  return any;
}

// libcurl before 8.0.0 (Debian 12 has 7.88.1) fails every request that reuses an h2c connection
// it opened with prior knowledge: "Error in the HTTP2 framing layer" (curl issue #10634). There
// each h2c request gets a connection of its own; h2 over TLS is not affected.
bool h2cReuseBroken() {
  static const bool broken = curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
  return broken;
}

TransportError classify(CURLcode rc, long os_errno) {
  switch (rc) {
  case CURLE_OK:
    return TransportError::None;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return TransportError::Resolve;
  case CURLE_COULDNT_CONNECT:
    if (os_errno == EMFILE || os_errno == ENFILE)
      return TransportError::GeneratorFdExhausted;
    return os_errno == ECONNREFUSED ? TransportError::ConnectRefused : TransportError::Connect;
  case CURLE_OPERATION_TIMEDOUT:
    return TransportError::Timeout;
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2_STREAM: // RST_STREAM from the peer
    return TransportError::Reset;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
    return TransportError::Tls;
  case CURLE_ABORTED_BY_CALLBACK:
    return TransportError::Cancelled;
  default: // WEIRD_SERVER_REPLY, HTTP2, URL_MALFORMAT, WRITE_ERROR (out of memory), ...
    return TransportError::Protocol;
  }
}

// As the Beast engine decides whether to send Content-Length.
bool sendsBody(const HttpRequest& request) {
  return !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
         request.method == "PATCH";
}

class CurlClient;
class Shard;
class CurlSession;

// One socket curl uses, or one curl told us about without opening it through us (the threaded
// resolver's socketpair): `foreign` entries hold a dup() so that closing ours can never
// deregister a descriptor number the OS has handed to someone else.
struct SocketEntry {
  SocketEntry(asio::io_context& io) : socket(io) {}
  tcp::socket socket;
  curl_socket_t fd = CURL_SOCKET_BAD; // the number curl knows
  Shard* shard = nullptr;
  int interest = 0;                 // CURL_POLL_IN / CURL_POLL_OUT bits
  bool pending[2] = {false, false}; // [0] read, [1] write wait armed
  uint32_t generation[2] = {0, 0};  // tells a cancelled wait's late completion from the live one
  bool foreign = false;
  bool closed = false;
};

// One multi handle, its timer and the sessions assigned to it.
class Shard {
public:
  Shard(CurlClient& client, asio::io_context& io);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  CURLM* multi() const { return multi_; }
  CurlClient& client() { return client_; }
  size_t size() const { return sessions_.size(); }
  void add(CurlSession* session) { sessions_.push_back(session); }
  void remove(CurlSession* session);
  // Detaches every session and cleans the multi handle up; the client is going away.
  void shutdown() noexcept;

  // Runs curl for one event and hands finished transfers to their sessions.
  void socketAction(curl_socket_t fd, int flags) noexcept;

  static int onTimer(CURLM* multi, long timeout_ms, void* userp) noexcept;
  static int onSocket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp) noexcept;

private:
  void setDeadline(long timeout_ms);
  void armTimer(std::chrono::steady_clock::time_point when);
  void drain() noexcept;

  CurlClient& client_;
  CURLM* multi_ = nullptr;
  asio::steady_timer timer_;
  bool timer_armed_ = false; // a wait on timer_ is pending (expiry() tells when)
  bool action_posted_ = false;
  std::optional<std::chrono::steady_clock::time_point> wanted_; // curl's latest deadline
  std::vector<CurlSession*> sessions_;
  // Timer and posted completions hold this so one already queued when the shard died is a
  // no-op instead of a use-after-free.
  std::shared_ptr<Shard*> self_;
};

class CurlClient final : public HttpClient {
public:
  CurlClient(asio::io_context& io, const common::HttpSpec& spec,
             std::shared_ptr<const TargetPolicy> allow)
      : io_(io), spec_(spec), resolver_(io), allow_(std::move(allow)) {
    globalInit();
  }
  ~CurlClient() override;

  std::unique_ptr<HttpSession> newSession() override;

  const common::HttpSpec& spec() const { return spec_; }
  HostResolver& resolver() { return resolver_; }
  const TargetPolicy* allow() const { return allow_.get(); }
  asio::io_context& io() { return io_; }

  SocketEntry* find(curl_socket_t fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= sockets_.size())
      return nullptr;
    return sockets_[fd].get();
  }
  std::shared_ptr<SocketEntry> open(Shard& shard, const curl_sockaddr& address);
  // errno of the last socket() that failed here, 0 after one that worked: curl reports no
  // errno when our open-socket callback fails (EMFILE: the generator's own failure).
  int lastOpenErrno() const { return last_open_errno_; }
  std::shared_ptr<SocketEntry> adopt(Shard& shard, curl_socket_t fd);
  void close(curl_socket_t fd) noexcept;
  void arm(const std::shared_ptr<SocketEntry>& entry, int direction);
  std::shared_ptr<SocketEntry>& slot(curl_socket_t fd) {
    if (static_cast<size_t>(fd) >= sockets_.size())
      sockets_.resize(static_cast<size_t>(fd) + 64);
    return sockets_[fd];
  }

  static curl_socket_t onOpenSocket(void* clientp, curlsocktype purpose,
                                    curl_sockaddr* address) noexcept;
  static int onCloseSocket(void* clientp, curl_socket_t fd) noexcept;

private:
  asio::io_context& io_;
  const common::HttpSpec& spec_;
  // Not curl's threaded resolver: removing a handle that is resolving joins its thread, so a
  // lookup that hangs blocks the load thread (a timeout, a halt) until getaddrinfo gives up.
  // curl gets our answers through CURLOPT_RESOLVE and never resolves a name itself.
  HostResolver resolver_;
  std::shared_ptr<const TargetPolicy> allow_;
  std::vector<std::shared_ptr<Shard>> shards_;
  // Indexed by descriptor: descriptors are small integers and this is looked up per event.
  std::vector<std::shared_ptr<SocketEntry>> sockets_;
  int last_open_errno_ = 0;
};

class CurlSession final : public HttpSession {
public:
  CurlSession(Shard& shard);
  ~CurlSession() override;

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override;
  HeaderList lastResponseHeaders() const override;
  std::optional<std::string_view> header(std::string_view name) const override {
    return findHeader(raw_headers_, name);
  }
  void cancel() noexcept override;

  // The transfer finished (the easy handle is already out of the multi).
  void onDone(CURLcode rc) noexcept;
  // The client is going away: let go of curl and wake a waiting perform() with Cancelled.
  void detach() noexcept;
  Shard* shard() const { return shard_; }
  // Whether curl may open a connection to `address` (--allow-target); remembers a refusal.
  bool admit(const curl_sockaddr& address) noexcept;

private:
  // Sets the easy handle up for `request`; false (with `detail_`) when it cannot be sent.
  bool prepare(const HttpRequest& request);
  // Resolves the request's host name (not an address) with the client's resolver and hands
  // curl the answer; false (with `out` filled) when there is none.
  asio::awaitable<bool> resolve(const HttpRequest& request, HttpResponse& out);
  // Whether perform() needs resolve() first: a host name without a fresh answer given to curl.
  bool needsResolve(const common::Endpoint& endpoint);
  void giveAnswer(const common::Endpoint& endpoint, HostAnswerPtr answer);
  void buildHeaders(const HttpRequest& request);
  void start(Waiter waiter) noexcept;
  void complete() noexcept;
  void fill(const HttpRequest& request, HttpResponse& out);

  static size_t onWrite(char* data, size_t size, size_t count, void* userp) noexcept;
  static size_t onHeader(char* data, size_t size, size_t count, void* userp) noexcept;

  Shard* shard_;
  CURL* easy_ = nullptr;
  std::optional<Waiter> waiter_;
  bool active_ = false; // the easy handle is in the multi
  bool cancelled_ = false;
  bool resolving_ = false; // waiting for the client's resolver (not curl)
  CURLcode result_ = CURLE_OK;
  std::string detail_; // why prepare() refused

  std::string url_;
  std::string last_url_;
  // The URL as curl's parsed handle (CURLOPT_CURLU): curl copies it per transfer instead of
  // parsing the URL string again (10 % of the instructions of a request).
  CURLU* url_handle_ = nullptr;
  std::string custom_method_; // what CURLOPT_CUSTOMREQUEST holds; empty: unset
  long http_version_ = -1;    // what CURLOPT_HTTP_VERSION holds
  bool forbid_reuse_ = false; // what CURLOPT_FORBID_REUSE holds
  // Header lines back to back, NUL-terminated, and curl_slist nodes pointing into them: curl
  // only reads the list, and building it this way allocates nothing once capacity is there.
  std::string header_text_;
  std::vector<size_t> header_offsets_;
  std::vector<curl_slist> header_nodes_;

  std::string body_;                  // all of it with keep_body_, else its first kBodyExcerptBytes
  bool keep_body_ = true;             // of the request in flight (HttpRequest::keep_body)
  uint64_t max_body_ = 0;             // http.max_body
  bool body_too_large_ = false;       // onWrite refused a kept body over max_body_
  bool head_too_large_ = false;       // onHeader refused a head over kMaxHeadBytes
  std::unique_ptr<GzipDecoder> gzip_; // after the first gzip body nobody reads
  std::string raw_headers_;           // the last response's header block, parsed on demand
  uint64_t header_bytes_ = 0;
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

// ---- Shard ----

Shard::Shard(CurlClient& client, asio::io_context& io)
    : client_(client), timer_(io), self_(std::make_shared<Shard*>(this)) {
  multi_ = curl_multi_init();
  if (!multi_)
    throw std::runtime_error("curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &Shard::onSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &Shard::onTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  // Every session keeps its connection between requests.
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(kShardSize));
  // A virtual user has a connection of its own over HTTP/2 too, as over HTTP/1.1: curl would
  // otherwise multiplex the shard's sessions onto one connection.
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_NOTHING));
}

Shard::~Shard() {
  shutdown();
}

void Shard::remove(CurlSession* session) {
  auto it = std::find(sessions_.begin(), sessions_.end(), session);
  if (it != sessions_.end()) {
    *it = sessions_.back();
    sessions_.pop_back();
  }
}

void Shard::shutdown() noexcept {
  *self_ = nullptr;
  // Easy handles leave the multi before it is cleaned up (curl's documented order).
  auto sessions = std::move(sessions_);
  for (auto* session : sessions)
    session->detach();
  if (multi_) {
    // Closes the cached connections through onCloseSocket: the client's socket table is alive.
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
  }
  try {
    timer_.cancel();
  } catch (...) {
  }
}

int Shard::onTimer(CURLM*, long timeout_ms, void* userp) noexcept {
  auto* shard = static_cast<Shard*>(userp);
  try {
    shard->setDeadline(timeout_ms);
    return 0;
  } catch (...) {
    return -1;
  }
}

void Shard::setDeadline(long timeout_ms) {
  if (timeout_ms < 0) {
    wanted_.reset();
    if (timer_armed_) {
      timer_armed_ = false;
      timer_.cancel();
    }
    return;
  }
  if (timeout_ms == 0) {
    // Every add_handle asks for this. Posted, not run here: socket_action from inside the
    // timer callback would re-enter curl.
    wanted_.reset();
    if (!action_posted_) {
      action_posted_ = true;
      asio::post(timer_.get_executor(), [self = self_] {
        if (Shard* shard = *self) {
          shard->action_posted_ = false;
          shard->socketAction(CURL_SOCKET_TIMEOUT, 0);
        }
      });
    }
    return;
  }
  wanted_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  // The deadline mostly moves later (the oldest request's timeout, then the next one's); an
  // armed timer that fires early re-arms itself, which saves re-programming the reactor's
  // timerfd on every request.
  if (!timer_armed_ || *wanted_ < timer_.expiry())
    armTimer(*wanted_);
}

void Shard::armTimer(std::chrono::steady_clock::time_point when) {
  timer_armed_ = true;
  timer_.expires_at(when);
  timer_.async_wait([self = self_](const error_code& ec) {
    Shard* shard = *self;
    if (ec == asio::error::operation_aborted || !shard)
      return;
    shard->timer_armed_ = false;
    if (!shard->wanted_)
      return;
    if (std::chrono::steady_clock::now() < *shard->wanted_) {
      shard->armTimer(*shard->wanted_);
      return;
    }
    shard->wanted_.reset();
    shard->socketAction(CURL_SOCKET_TIMEOUT, 0);
  });
}

int Shard::onSocket(CURL*, curl_socket_t fd, int what, void* userp, void*) noexcept {
  auto* shard = static_cast<Shard*>(userp);
  auto& client = shard->client();
  try {
    SocketEntry* entry = client.find(fd);
    if (what == CURL_POLL_REMOVE) {
      if (!entry)
        return 0;
      entry->interest = 0;
      if (entry->foreign) {
        client.close(fd);
        return 0;
      }
      // The socket stays registered with the reactor (re-registering costs syscalls per
      // request); only a wait left armed is cancelled, so an idle connection holds no handler.
      if (entry->pending[0] || entry->pending[1]) {
        for (int d = 0; d < 2; ++d) {
          entry->pending[d] = false;
          ++entry->generation[d];
        }
        error_code ignored;
        entry->socket.cancel(ignored);
      }
      return 0;
    }
    std::shared_ptr<SocketEntry> owner;
    if (entry) {
      owner = client.slot(fd);
    } else {
      owner = client.adopt(*shard, fd);
      if (!owner)
        return -1;
    }
    owner->shard = shard;
    owner->interest = what;
    if ((what & CURL_POLL_IN) && !owner->pending[0])
      client.arm(owner, 0);
    if ((what & CURL_POLL_OUT) && !owner->pending[1])
      client.arm(owner, 1);
    return 0;
  } catch (...) {
    return -1;
  }
}

void Shard::socketAction(curl_socket_t fd, int flags) noexcept {
  if (!multi_)
    return;
  int running = 0;
  curl_multi_socket_action(multi_, fd, flags, &running);
  drain();
}

void Shard::drain() noexcept {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL* easy = msg->easy_handle;
    CURLcode rc = msg->data.result; // `msg` dies with remove_handle
    char* session = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &session);
    curl_multi_remove_handle(multi_, easy);
    if (session)
      reinterpret_cast<CurlSession*>(session)->onDone(rc);
  }
}

// ---- CurlClient ----

CurlClient::~CurlClient() {
  for (auto& shard : shards_)
    shard->shutdown();
  // Whatever curl did not close (nothing, normally).
  for (size_t fd = 0; fd < sockets_.size(); ++fd)
    if (sockets_[fd])
      close(static_cast<curl_socket_t>(fd));
}

std::unique_ptr<HttpSession> CurlClient::newSession() {
  // Fill the first shard with room; shards are created on demand and kept (a multi handle and
  // a timer are cheap, and they hold the idle connections).
  Shard* target = nullptr;
  for (auto& shard : shards_) {
    if (shard->size() < kShardSize) {
      target = shard.get();
      break;
    }
  }
  if (!target) {
    shards_.push_back(std::make_shared<Shard>(*this, io_));
    target = shards_.back().get();
  }
  return std::make_unique<CurlSession>(*target);
}

std::shared_ptr<SocketEntry> CurlClient::open(Shard& shard, const curl_sockaddr& address) {
  auto entry = std::make_shared<SocketEntry>(io_);
  error_code ec;
  entry->socket.open(address.family == AF_INET6 ? tcp::v6() : tcp::v4(), ec);
  last_open_errno_ = ec ? ec.value() : 0;
  if (ec)
    return nullptr;
  entry->fd = entry->socket.native_handle();
  entry->shard = &shard;
  auto& s = slot(entry->fd);
  if (s) // a foreign descriptor curl closed without telling us; the number is ours now
    close(entry->fd);
  s = entry;
  return entry;
}

std::shared_ptr<SocketEntry> CurlClient::adopt(Shard& shard, curl_socket_t fd) {
  int copy = ::dup(fd);
  if (copy < 0)
    return nullptr;
  auto entry = std::make_shared<SocketEntry>(io_);
  error_code ec;
  // asio only polls it: the protocol tag does not matter for async_wait.
  entry->socket.assign(tcp::v4(), copy, ec);
  if (ec) {
    ::close(copy);
    return nullptr;
  }
  entry->fd = fd;
  entry->shard = &shard;
  entry->foreign = true;
  slot(fd) = entry;
  return entry;
}

void CurlClient::close(curl_socket_t fd) noexcept {
  auto entry = std::move(sockets_[fd]);
  entry->closed = true;
  error_code ignored;
  entry->socket.close(ignored); // completes armed waits with operation_aborted
}

void CurlClient::arm(const std::shared_ptr<SocketEntry>& entry, int direction) {
  entry->pending[direction] = true;
  uint32_t generation = ++entry->generation[direction];
  entry->socket.async_wait(
      direction == 0 ? tcp::socket::wait_read : tcp::socket::wait_write,
      [this, entry, direction, generation](const error_code& ec) {
        if (entry->closed || generation != entry->generation[direction])
          return;
        entry->pending[direction] = false;
        if (ec == asio::error::operation_aborted)
          return;
        int bit = direction == 0 ? CURL_POLL_IN : CURL_POLL_OUT;
        if (!(entry->interest & bit))
          return;
        int flags = ec ? CURL_CSELECT_ERR : (direction == 0 ? CURL_CSELECT_IN : CURL_CSELECT_OUT);
        entry->shard->socketAction(entry->fd, flags);
        // curl may have closed it, dropped interest, or re-armed through onSocket already.
        if (!entry->closed && (entry->interest & bit) && !entry->pending[direction]) {
          try {
            arm(entry, direction);
          } catch (...) {
          }
        }
      });
}

curl_socket_t CurlClient::onOpenSocket(void* clientp, curlsocktype purpose,
                                       curl_sockaddr* address) noexcept {
  auto* session = static_cast<CurlSession*>(clientp);
  Shard* shard = session->shard();
  if (!shard || purpose != CURLSOCKTYPE_IPCXN || address->socktype != SOCK_STREAM ||
      (address->family != AF_INET && address->family != AF_INET6))
    return CURL_SOCKET_BAD;
  // curl then tries the host's next address, or fails with COULDNT_CONNECT (fill() tells).
  if (!session->admit(*address))
    return CURL_SOCKET_BAD;
  try {
    auto entry = shard->client().open(*shard, *address);
    return entry ? entry->fd : CURL_SOCKET_BAD;
  } catch (...) {
    return CURL_SOCKET_BAD;
  }
}

int CurlClient::onCloseSocket(void* clientp, curl_socket_t fd) noexcept {
  auto& client = static_cast<Shard*>(clientp)->client();
  if (client.find(fd))
    client.close(fd);
  else
    ::close(fd);
  return 0;
}

// ---- CurlSession ----

CurlSession::CurlSession(Shard& shard) : shard_(&shard) {
  easy_ = curl_easy_init();
  url_handle_ = curl_url();
  if (!easy_ || !url_handle_) {
    curl_easy_cleanup(easy_);
    curl_url_cleanup(url_handle_);
    throw std::runtime_error("curl_easy_init failed");
  }
  const auto& spec = shard.client().spec();
  curl_easy_setopt(easy_, CURLOPT_PRIVATE, reinterpret_cast<char*>(this));
  curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L); // -21 % without: curl blocks SIGPIPE per call
  curl_easy_setopt(easy_, CURLOPT_BUFFERSIZE, kBufferSize);
  curl_easy_setopt(easy_, CURLOPT_TCP_NODELAY, 1L);
  forbid_reuse_ = !spec.keep_alive;
  curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, forbid_reuse_ ? 1L : 0L);
  // Send the target as the scenario wrote it, as the Beast engine does.
  curl_easy_setopt(easy_, CURLOPT_PATH_AS_IS, 1L);
  // Redirects are the engine's (http.follow_redirects), which judges and times every hop.
  curl_easy_setopt(easy_, CURLOPT_FOLLOWLOCATION, 0L);
  // Sends "Accept-Encoding: gzip" (unless the request has its own) and decodes the body.
  curl_easy_setopt(easy_, CURLOPT_ACCEPT_ENCODING, "gzip");
  if (spec.version == common::HttpSpec::Version::Http1) {
    // curl's default for https is HTTP/2 where the server offers it.
    http_version_ = CURL_HTTP_VERSION_1_1;
    curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, http_version_);
  }
  // TLS (http.tls). The PEM blobs are not copied: the spec outlives the client and its handles.
  const auto& tls = spec.tls;
  curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
  curl_easy_setopt(easy_, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
  auto blob = [](const std::string& pem) {
    return curl_blob{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_NOCOPY};
  };
  if (!tls.ca_pem.empty()) {
    curl_blob ca = blob(tls.ca_pem); // replaces the system's authorities, as in the Beast engine
    curl_easy_setopt(easy_, CURLOPT_CAINFO_BLOB, &ca);
  }
  if (!tls.cert_pem.empty()) {
    curl_blob cert = blob(tls.cert_pem);
    curl_blob key = blob(tls.key_pem.empty() ? tls.cert_pem : tls.key_pem);
    curl_easy_setopt(easy_, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(easy_, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(easy_, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(easy_, CURLOPT_SSLKEYTYPE, "PEM");
  }
  curl_easy_setopt(easy_, CURLOPT_OPENSOCKETFUNCTION, &CurlClient::onOpenSocket);
  curl_easy_setopt(easy_, CURLOPT_OPENSOCKETDATA, this); // the session: see admit()
  curl_easy_setopt(easy_, CURLOPT_CLOSESOCKETFUNCTION, &CurlClient::onCloseSocket);
  curl_easy_setopt(easy_, CURLOPT_CLOSESOCKETDATA, &shard);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, &CurlSession::onWrite);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, &CurlSession::onHeader);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, this);
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_);
  // Debian's libcurl verifies against both the CA bundle and /etc/ssl/certs; with a CA path
  // set, curl 7.88 does not cache the parsed store and re-reads ~140 certificates for every
  // TLS connection (17 ms of CPU each). The bundle alone holds the same authorities and is
  // cached per multi handle.
  curl_easy_setopt(easy_, CURLOPT_CAPATH, static_cast<char*>(nullptr));
  if (!proxyInEnvironment()) {
    curl_easy_setopt(easy_, CURLOPT_PROXY, "");
    curl_easy_setopt(easy_, CURLOPT_NOPROXY, "");
  }
  curl_easy_setopt(easy_, CURLOPT_CURLU, url_handle_);
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
  curl_url_cleanup(url_handle_);
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
  // the next request or destroy this session) inside Shard::drain().
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

void CurlSession::buildHeaders(const HttpRequest& request) {
  header_text_.clear();
  header_offsets_.clear();
  auto add = [this](std::string_view a, std::string_view b = {}, char sep = ':') {
    header_offsets_.push_back(header_text_.size());
    header_text_.append(a);
    if (sep) {
      header_text_.push_back(sep);
      if (sep == ':' && !b.empty())
        header_text_.push_back(' ');
    }
    header_text_.append(b);
    header_text_.push_back('\0');
  };
  bool has_content_type = false;
  bool has_user_agent = false;
  bool has_accept = false;
  if (request.headers) {
    for (const auto& [name, value] : *request.headers) {
      has_content_type |= strcasecmp(name.c_str(), "Content-Type") == 0;
      has_user_agent |= strcasecmp(name.c_str(), "User-Agent") == 0;
      has_accept |= strcasecmp(name.c_str(), "Accept") == 0;
      // curl drops "Name:" (empty value) from the request; "Name;" sends it empty.
      if (value.empty())
        add(name, {}, ';');
      else
        add(name, value);
    }
  }
  if (!has_user_agent)
    add(kUserAgent, {}, 0);
  // curl would wait up to a second for "100 Continue" before sending a large body.
  const bool has_body = sendsBody(request);
  if (has_body)
    add("Expect");
  // The same head as the Beast engine sends: curl's default "Accept: */*" and the form type it
  // gives a POSTFIELDS body go unless the scenario set them.
  if (!has_accept)
    add("Accept");
  if (!has_content_type && has_body)
    add("Content-Type");
  // HTTP/2 has no Connection field: there FORBID_REUSE alone opens a connection per request.
  const auto& spec = shard_->client().spec();
  if (!spec.keep_alive && spec.version == common::HttpSpec::Version::Http1)
    add("Connection", "close");

  header_nodes_.resize(header_offsets_.size());
  for (size_t i = 0; i < header_nodes_.size(); ++i) {
    header_nodes_[i].data = header_text_.data() + header_offsets_[i];
    header_nodes_[i].next = i + 1 < header_nodes_.size() ? &header_nodes_[i + 1] : nullptr;
  }
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER,
                   header_nodes_.empty() ? static_cast<curl_slist*>(nullptr)
                                         : header_nodes_.data());
}

bool CurlSession::prepare(const HttpRequest& request) {
  if (!request.endpoint) {
    detail_ = "request without an endpoint";
    return false;
  }
  const auto& endpoint = *request.endpoint;
  url_.clear();
  url_.append(endpoint.scheme);
  url_.append("://");
  bool ipv6 = endpoint.host.find(':') != std::string::npos && endpoint.host.front() != '[';
  if (ipv6)
    url_.push_back('[');
  url_.append(endpoint.host);
  if (ipv6)
    url_.push_back(']');
  char port[8];
  auto port_end = std::to_chars(port, port + sizeof port, endpoint.port).ptr;
  url_.push_back(':');
  url_.append(port, port_end);
  url_.append(request.target.empty() ? std::string_view("/") : request.target);
  // Parsed only when it changes; a virtual user mostly repeats the same URL. The flags are the
  // ones curl gives a CURLOPT_URL string (with PATH_AS_IS: the target as the scenario wrote it).
  if (url_ != last_url_) {
    CURLUcode uc = curl_url_set(url_handle_, CURLUPART_URL, url_.c_str(),
                                CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
    if (uc != CURLUE_OK) {
      detail_ = "bad URL: " + url_ + " (" + curl_url_strerror(uc) + ")";
      last_url_.clear();
      return false;
    }
    last_url_ = url_;
  }

  const auto& spec = shard_->client().spec();
  if (spec.version == common::HttpSpec::Version::Http2) {
    // h2 where TLS's ALPN offers it; without TLS, h2c with prior knowledge (no Upgrade dance).
    const bool tls = endpoint.tls();
    long version = tls ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    if (version != http_version_) {
      http_version_ = version;
      curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, http_version_);
    }
    const bool forbid_reuse = !spec.keep_alive || (!tls && h2cReuseBroken());
    if (forbid_reuse != forbid_reuse_) {
      forbid_reuse_ = forbid_reuse;
      curl_easy_setopt(easy_, CURLOPT_FORBID_REUSE, forbid_reuse_ ? 1L : 0L);
    }
  }

  const auto method = request.method;
  const bool has_body = sendsBody(request);
  std::string_view custom; // CUSTOMREQUEST: empty when curl's own method word is right
  if (method == "HEAD") {
    curl_easy_setopt(easy_, CURLOPT_NOBODY, 1L);
  } else if (has_body) {
    curl_easy_setopt(easy_, CURLOPT_NOBODY, 0L);
    // POSTFIELDS does not copy: the body view is valid until perform() completes.
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, request.body.empty() ? "" : request.body.data());
    if (method != "POST")
      custom = method;
  } else {
    curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L); // also undoes NOBODY and POSTFIELDS
    if (method != "GET")
      custom = method;
  }
  // curl copies the string on every set; most virtual users repeat one method.
  if (custom != custom_method_) {
    custom_method_.assign(custom);
    curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST,
                     custom_method_.empty() ? static_cast<char*>(nullptr) : custom_method_.c_str());
  }
  buildHeaders(request);

  // What the lookup left of the request's timeout (resolve_spent_ is under it).
  long timeout_ms = static_cast<long>((request.timeout.count() + 999) / 1000);
  if (timeout_ms > 0 && resolve_spent_.count() > 0)
    timeout_ms = std::max(1L, static_cast<long>((request.timeout - resolve_spent_).count() / 1000));
  curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, timeout_ms); // 0: none
  return true;
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
  body_.clear();
  // The body limits, as the Beast engine's: a declared length over the cap fails at once
  // (CURLE_FILESIZE_EXCEEDED), a longer body as it arrives (onWrite).
  keep_body_ = request.keep_body;
  max_body_ = shard_->client().spec().max_body;
  body_too_large_ = false;
  head_too_large_ = false;
  curl_easy_setopt(easy_, CURLOPT_MAXFILESIZE_LARGE,
                   static_cast<curl_off_t>(keep_body_ ? max_body_ : 0));
  // As the Beast engine: a body nobody reads is not inflated (nor checked), only counted.
  curl_easy_setopt(easy_, CURLOPT_HTTP_CONTENT_DECODING, keep_body_ ? 1L : 0L);
  raw_headers_.clear();
  header_bytes_ = 0;
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
    ready = prepare(request);
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
  out.bytes_in = header_bytes_ + static_cast<uint64_t>(downloaded);
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
    out.detail =
        (host_is_address_ ? "" : host + ": ") + shard_->client().allow()->refusal(*refused_);
    return;
  }
  if (result_ != CURLE_OK) {
    long os_errno = 0;
    curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &os_errno);
    // CURLINFO_OS_ERRNO can be the previous transfer's: a socket() that failed since wins.
    if (result_ == CURLE_COULDNT_CONNECT && shard_ && shard_->client().lastOpenErrno() != 0)
      os_errno = shard_->client().lastOpenErrno();
    out.error = classify(result_, os_errno);
    if (body_too_large_ || result_ == CURLE_FILESIZE_EXCEEDED) {
      out.error = TransportError::BodyTooLarge;
      out.detail = "body over http.max_body (" + std::to_string(max_body_) + " bytes)";
    } else if (head_too_large_) {
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
  out.body = body_;
  if (!keep_body_ && !body_.empty()) {
    // The first bytes of a gzip body nobody reads, decoded for an error report.
    const auto coding = findHeader(raw_headers_, "Content-Encoding");
    auto is = [&coding](std::string_view name) {
      return coding->size() == name.size() &&
             strncasecmp(coding->data(), name.data(), name.size()) == 0;
    };
    if (coding && (is("gzip") || is("x-gzip"))) {
      if (!gzip_)
        gzip_ = std::make_unique<GzipDecoder>();
      gzip_->decodePrefix(body_, kBodyExcerptBytes, out.body);
    }
  }
  long version = 0;
  curl_easy_getinfo(easy_, CURLINFO_HTTP_VERSION, &version);
  out.http_version = version == CURL_HTTP_VERSION_2_0 ? 20 : 11;
}

bool CurlSession::admit(const curl_sockaddr& address) noexcept {
  const TargetPolicy* allow = shard_->client().allow();
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
  HostAnswerPtr answer = shard_->client().resolver().fresh(host_);
  if (!answer || answer->addresses.empty())
    return true;
  giveAnswer(endpoint, std::move(answer));
  return false;
}

asio::awaitable<bool> CurlSession::resolve(const HttpRequest& request, HttpResponse& out) {
  const auto started = std::chrono::steady_clock::now();
  const auto deadline = request.timeout.count() > 0 ? started + request.timeout
                                                    : std::chrono::steady_clock::time_point::max();
  CurlClient& client = shard_->client();
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

HeaderList CurlSession::lastResponseHeaders() const {
  HeaderList headers;
  std::string_view raw = raw_headers_;
  bool status_line = true;
  while (!raw.empty()) {
    auto end = raw.find('\n');
    auto line = raw.substr(0, end);
    raw.remove_prefix(end == raw.npos ? raw.size() : end + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
      line.remove_suffix(1);
    if (status_line) {
      status_line = false;
      continue;
    }
    auto colon = line.find(':');
    if (line.empty() || colon == line.npos)
      continue;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
      value.remove_suffix(1);
    headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return headers;
}

size_t CurlSession::onWrite(char* data, size_t size, size_t count, void* userp) noexcept {
  auto* session = static_cast<CurlSession*>(userp);
  size_t n = size * count;
  std::string& body = session->body_;
  size_t keep = n; // a body nobody reads: its first bytes, for an error report; counted by curl
  if (!session->keep_body_)
    keep = std::min(n, body.size() < kBodyExcerptBytes ? kBodyExcerptBytes - body.size() : 0);
  else if (n > session->max_body_ - std::min<uint64_t>(body.size(), session->max_body_)) {
    session->body_too_large_ = true;
    return 0; // curl fails the transfer with CURLE_WRITE_ERROR
  }
  try {
    body.append(data, keep);
  } catch (...) {
    return 0;
  }
  return n;
}

size_t CurlSession::onHeader(char* data, size_t size, size_t count, void* userp) noexcept {
  auto* session = static_cast<CurlSession*>(userp);
  size_t n = size * count;
  session->header_bytes_ += n;
  // A new status line (after "100 Continue") starts the block we report.
  if (n >= 5 && std::string_view(data, 5) == "HTTP/")
    session->raw_headers_.clear();
  // The Beast engine's limit, for the same error on both (curl's own are larger).
  if (session->raw_headers_.size() + n > Http1ResponseParser::kMaxHeadBytes) {
    session->head_too_large_ = true;
    return 0;
  }
  try {
    session->raw_headers_.append(data, n);
  } catch (...) {
    return 0;
  }
  return n;
}

} // namespace

std::unique_ptr<HttpClient> makeCurlClient(asio::io_context& io, const common::HttpSpec& spec,
                                           std::shared_ptr<const TargetPolicy> allow) {
  return std::make_unique<CurlClient>(io, spec, std::move(allow));
}

} // namespace stampede::worker
