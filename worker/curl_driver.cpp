#include "worker/curl_driver.h"

#include <algorithm>
#include <stdexcept>
#include <unistd.h>

namespace stampede::worker {

using tcp = asio::ip::tcp;
using boost::system::error_code;

// ---- CurlShard ----

CurlShard::CurlShard(CurlSockets& sockets, asio::io_context& io)
    : sockets_(sockets), timer_(io), self_(std::make_shared<CurlShard*>(this)) {
  multi_ = curl_multi_init();
  if (!multi_)
    throw std::runtime_error("curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlShard::onSocket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlShard::onTimer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  // Every session keeps its connection between requests.
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(kShardSize));
  // A virtual user has a connection of its own over HTTP/2 too, as over HTTP/1.1: curl would
  // otherwise multiplex the shard's sessions onto one connection.
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_NOTHING));
}

CurlShard::~CurlShard() {
  shutdown();
}

void CurlShard::remove(CurlTransfer* transfer) {
  auto it = std::find(transfers_.begin(), transfers_.end(), transfer);
  if (it != transfers_.end()) {
    *it = transfers_.back();
    transfers_.pop_back();
  }
}

void CurlShard::shutdown() noexcept {
  *self_ = nullptr;
  // Easy handles leave the multi before it is cleaned up (curl's documented order).
  auto transfers = std::move(transfers_);
  for (auto* transfer : transfers)
    transfer->detach();
  if (multi_) {
    // Closes the cached connections through onCloseSocket: the socket table is alive.
    curl_multi_cleanup(multi_);
    multi_ = nullptr;
  }
  try {
    timer_.cancel();
  } catch (...) {
  }
}

int CurlShard::onTimer(CURLM*, long timeout_ms, void* userp) noexcept {
  auto* shard = static_cast<CurlShard*>(userp);
  try {
    shard->setDeadline(timeout_ms);
    return 0;
  } catch (...) {
    return -1;
  }
}

void CurlShard::setDeadline(long timeout_ms) {
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
        if (CurlShard* shard = *self) {
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

void CurlShard::armTimer(std::chrono::steady_clock::time_point when) {
  timer_armed_ = true;
  timer_.expires_at(when);
  timer_.async_wait([self = self_](const error_code& ec) {
    CurlShard* shard = *self;
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

int CurlShard::onSocket(CURL*, curl_socket_t fd, int what, void* userp, void*) noexcept {
  auto* shard = static_cast<CurlShard*>(userp);
  auto& sockets = shard->sockets();
  try {
    CurlSocket* entry = sockets.find(fd);
    if (what == CURL_POLL_REMOVE) {
      if (!entry)
        return 0;
      entry->interest = 0;
      if (entry->foreign) {
        sockets.close(fd);
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
    std::shared_ptr<CurlSocket> owner;
    if (entry) {
      owner = sockets.slot(fd);
    } else {
      owner = sockets.adopt(*shard, fd);
      if (!owner)
        return -1;
    }
    owner->shard = shard;
    owner->interest = what;
    if ((what & CURL_POLL_IN) && !owner->pending[0])
      sockets.arm(owner, 0);
    if ((what & CURL_POLL_OUT) && !owner->pending[1])
      sockets.arm(owner, 1);
    return 0;
  } catch (...) {
    return -1;
  }
}

void CurlShard::socketAction(curl_socket_t fd, int flags) noexcept {
  if (!multi_)
    return;
  int running = 0;
  curl_multi_socket_action(multi_, fd, flags, &running);
  drain();
}

void CurlShard::drain() noexcept {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
    if (msg->msg != CURLMSG_DONE)
      continue;
    CURL* easy = msg->easy_handle;
    CURLcode rc = msg->data.result; // `msg` dies with remove_handle
    char* transfer = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &transfer);
    curl_multi_remove_handle(multi_, easy);
    if (transfer)
      reinterpret_cast<CurlTransfer*>(transfer)->onDone(rc);
  }
}

int CurlShard::onCloseSocket(void* clientp, curl_socket_t fd) noexcept {
  auto& sockets = static_cast<CurlShard*>(clientp)->sockets();
  if (sockets.find(fd))
    sockets.close(fd);
  else
    ::close(fd);
  return 0;
}

// ---- CurlSockets ----

std::shared_ptr<CurlSocket> CurlSockets::open(CurlShard& shard, const curl_sockaddr& address) {
  auto entry = std::make_shared<CurlSocket>(io_);
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

std::shared_ptr<CurlSocket> CurlSockets::adopt(CurlShard& shard, curl_socket_t fd) {
  int copy = ::dup(fd);
  if (copy < 0)
    return nullptr;
  auto entry = std::make_shared<CurlSocket>(io_);
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

void CurlSockets::close(curl_socket_t fd) noexcept {
  auto entry = std::move(sockets_[fd]);
  entry->closed = true;
  error_code ignored;
  entry->socket.close(ignored); // completes armed waits with operation_aborted
}

void CurlSockets::arm(const std::shared_ptr<CurlSocket>& entry, int direction) {
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

void CurlSockets::closeAll() noexcept {
  for (size_t fd = 0; fd < sockets_.size(); ++fd)
    if (sockets_[fd])
      close(static_cast<curl_socket_t>(fd));
}

} // namespace stampede::worker
