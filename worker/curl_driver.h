// libcurl's multi_socket API driven by a load thread's io_context: asio owns the sockets and
// the timers, curl the protocol. A CurlShard is one multi handle with its timer; CurlSockets is
// the table of the sockets curl uses, shared by the shards of one client. Easy handles are
// sharded over multi handles of at most kShardSize because curl's connection-reuse scan is
// linear in the size of a multi handle (one multi with 8,000 handles fell to 7k req/s).
// Load thread only.
#pragma once

#include "common/asio.h"

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

namespace stampede::worker {

constexpr size_t kShardSize = 64;

class CurlShard;

// One socket curl uses, or one curl told us about without opening it through us (the threaded
// resolver's socketpair): `foreign` entries hold a dup() so that closing ours can never
// deregister a descriptor number the OS has handed to someone else.
struct CurlSocket {
  explicit CurlSocket(asio::io_context& io) : socket(io) {}
  asio::ip::tcp::socket socket;
  curl_socket_t fd = CURL_SOCKET_BAD; // the number curl knows
  CurlShard* shard = nullptr;
  int interest = 0;                 // CURL_POLL_IN / CURL_POLL_OUT bits
  bool pending[2] = {false, false}; // [0] read, [1] write wait armed
  uint32_t generation[2] = {0, 0};  // tells a cancelled wait's late completion from the live one
  bool foreign = false;
  bool closed = false;
};

// The sockets of one client's shards, indexed by descriptor: descriptors are small integers and
// this is looked up per event.
class CurlSockets {
public:
  explicit CurlSockets(asio::io_context& io) : io_(io) {}
  ~CurlSockets() { closeAll(); }
  CurlSockets(const CurlSockets&) = delete;
  CurlSockets& operator=(const CurlSockets&) = delete;

  CurlSocket* find(curl_socket_t fd) {
    if (fd < 0 || static_cast<size_t>(fd) >= sockets_.size())
      return nullptr;
    return sockets_[fd].get();
  }
  std::shared_ptr<CurlSocket>& slot(curl_socket_t fd) {
    if (static_cast<size_t>(fd) >= sockets_.size())
      sockets_.resize(static_cast<size_t>(fd) + 64);
    return sockets_[fd];
  }
  // A new socket for curl to connect (CURLOPT_OPENSOCKETFUNCTION); nullptr when socket() fails.
  std::shared_ptr<CurlSocket> open(CurlShard& shard, const curl_sockaddr& address);
  // errno of the last socket() that failed here, 0 after one that worked: curl reports no
  // errno when our open-socket callback fails (EMFILE: the generator's own failure).
  int lastOpenErrno() const { return last_open_errno_; }
  // Watches a descriptor curl opened itself.
  std::shared_ptr<CurlSocket> adopt(CurlShard& shard, curl_socket_t fd);
  void close(curl_socket_t fd) noexcept;
  // Whatever curl did not close (nothing, normally).
  void closeAll() noexcept;
  // Waits for `direction` (0 read, 1 write) and runs curl on it, again while curl wants it.
  void arm(const std::shared_ptr<CurlSocket>& entry, int direction);

private:
  asio::io_context& io_;
  std::vector<std::shared_ptr<CurlSocket>> sockets_;
  int last_open_errno_ = 0;
};

// What a shard tells the owner of an easy handle (CURLOPT_PRIVATE points to one).
class CurlTransfer {
public:
  // The transfer finished; the easy handle is already out of the multi.
  virtual void onDone(CURLcode rc) noexcept = 0;
  // The shard is going away: let go of curl and wake a waiting request with Cancelled.
  virtual void detach() noexcept = 0;

protected:
  ~CurlTransfer() = default;
};

// One multi handle, its timer and the transfers assigned to it.
class CurlShard {
public:
  CurlShard(CurlSockets& sockets, asio::io_context& io);
  ~CurlShard();
  CurlShard(const CurlShard&) = delete;
  CurlShard& operator=(const CurlShard&) = delete;

  CURLM* multi() const { return multi_; }
  CurlSockets& sockets() { return sockets_; }
  size_t size() const { return transfers_.size(); }
  void add(CurlTransfer* transfer) { transfers_.push_back(transfer); }
  void remove(CurlTransfer* transfer);
  // Detaches every transfer and cleans the multi handle up; the client is going away.
  void shutdown() noexcept;

  // Runs curl for one event and hands finished transfers to their owners.
  void socketAction(curl_socket_t fd, int flags) noexcept;

  // CURLOPT_CLOSESOCKETFUNCTION, with the shard as its data.
  static int onCloseSocket(void* clientp, curl_socket_t fd) noexcept;

private:
  static int onTimer(CURLM* multi, long timeout_ms, void* userp) noexcept;
  static int onSocket(CURL* easy, curl_socket_t fd, int what, void* userp, void* socketp) noexcept;
  void setDeadline(long timeout_ms);
  void armTimer(std::chrono::steady_clock::time_point when);
  void drain() noexcept;

  CurlSockets& sockets_;
  CURLM* multi_ = nullptr;
  asio::steady_timer timer_;
  bool timer_armed_ = false; // a wait on timer_ is pending (expiry() tells when)
  bool action_posted_ = false;
  std::optional<std::chrono::steady_clock::time_point> wanted_; // curl's latest deadline
  std::vector<CurlTransfer*> transfers_;
  // Timer and posted completions hold this so one already queued when the shard died is a
  // no-op instead of a use-after-free.
  std::shared_ptr<CurlShard*> self_;
};

} // namespace stampede::worker
