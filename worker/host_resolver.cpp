#include "worker/host_resolver.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

#include <netdb.h>
#include <sys/socket.h>

namespace stampede::worker {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Distinct host names kept at most; beyond it the idle entries go (a templated host name can
// name a new host per request).
constexpr size_t kMaxEntries = 1024;

} // namespace

// What a lookup thread needs to hand its answer back: the io_context to post to, and the
// resolver, both cleared when the resolver goes away (under the mutex, so a thread never posts
// to an io_context that is being destroyed).
struct HostResolver::Mailbox {
  std::mutex mutex;
  asio::io_context* io = nullptr;
  HostResolver* resolver = nullptr;
};

HostWait::~HostWait() {
  if (resolver_)
    resolver_->forget(*this);
}

void HostWait::abort() noexcept {
  if (!resolver_ || aborted_)
    return;
  aborted_ = true;
  try {
    timer_.cancel();
  } catch (...) {
  }
}

HostResolver::HostResolver(asio::io_context& io, LookUpFunction look_up)
    : look_up_(std::move(look_up)), mailbox_(std::make_shared<Mailbox>()) {
  mailbox_->io = &io;
  mailbox_->resolver = this;
}

HostResolver::~HostResolver() {
  {
    std::lock_guard lock(mailbox_->mutex);
    mailbox_->io = nullptr;
    mailbox_->resolver = nullptr;
  }
  for (auto& [host, entry] : entries_)
    for (auto* wait : entry.waiters)
      wait->resolver_ = nullptr;
}

HostAnswerPtr HostResolver::fresh(const std::string& host) {
  auto it = entries_.find(host);
  if (it == entries_.end() || !it->second.answer || SteadyClock::now() >= it->second.expires)
    return nullptr;
  return it->second.answer;
}

HostAnswerPtr HostResolver::lookUp(const std::string& host) {
  auto answer = std::make_shared<HostAnswer>();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_ADDRCONFIG; // as asio's resolver: no IPv6 answers on a host without IPv6
  addrinfo* list = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &list);
  if (rc != 0) {
    answer->error = rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc);
    return answer;
  }
  for (addrinfo* ai = list; ai; ai = ai->ai_next) {
    asio::ip::address a;
    if (ai->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(ai->ai_addr);
      a = asio::ip::address_v4(ntohl(in->sin_addr.s_addr));
    } else if (ai->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(ai->ai_addr);
      asio::ip::address_v6::bytes_type bytes;
      std::memcpy(bytes.data(), in6->sin6_addr.s6_addr, bytes.size());
      a = asio::ip::address_v6(bytes, in6->sin6_scope_id);
    } else {
      continue;
    }
    if (std::find(answer->addresses.begin(), answer->addresses.end(), a) == answer->addresses.end())
      answer->addresses.push_back(a);
  }
  ::freeaddrinfo(list);
  if (answer->addresses.empty())
    answer->error = "no IPv4 or IPv6 address";
  return answer;
}

bool HostResolver::start(const std::string& host, Entry& entry) {
  try {
    std::thread([mailbox = mailbox_, look_up = look_up_, host] {
      HostAnswerPtr answer;
      try {
        answer = look_up(host);
      } catch (...) {
      }
      if (!answer)
        return; // out of memory: the waiters' deadlines end their waits
      std::lock_guard lock(mailbox->mutex);
      if (!mailbox->io)
        return;
      try {
        // The handler runs on the load thread, the resolver's: it checks that the resolver is
        // still there.
        asio::post(*mailbox->io, [mailbox, host, answer = std::move(answer)]() mutable {
          HostResolver* resolver = nullptr;
          {
            std::lock_guard lock(mailbox->mutex);
            resolver = mailbox->resolver;
          }
          if (resolver)
            resolver->deliver(host, std::move(answer));
        });
      } catch (...) {
      }
    }).detach();
  } catch (const std::exception& e) {
    auto failed = std::make_shared<HostAnswer>();
    failed->error = std::string("cannot start a lookup: ") + e.what();
    entry.answer = std::move(failed);
    entry.expires = SteadyClock::now() + kFailureTtl;
    return false;
  }
  entry.looking_up = true;
  return true;
}

void HostResolver::deliver(const std::string& host, HostAnswerPtr answer) {
  auto it = entries_.find(host);
  if (it == entries_.end())
    return;
  auto& entry = it->second;
  entry.looking_up = false;
  entry.expires = SteadyClock::now() + (answer->addresses.empty() ? kFailureTtl : kAnswerTtl);
  entry.answer = answer;
  auto waiters = std::move(entry.waiters);
  entry.waiters.clear();
  for (auto* wait : waiters) {
    wait->answer_ = answer;
    wait->resolver_ = nullptr; // no longer listed
    try {
      wait->timer_.cancel();
    } catch (...) {
    }
  }
}

void HostResolver::forget(HostWait& wait) noexcept {
  auto it = entries_.find(wait.host_);
  if (it != entries_.end()) {
    auto& waiters = it->second.waiters;
    waiters.erase(std::remove(waiters.begin(), waiters.end(), &wait), waiters.end());
  }
  wait.resolver_ = nullptr;
}

asio::awaitable<HostAnswerPtr> HostResolver::resolve(const std::string& host, HostWait& wait,
                                                     SteadyClock::time_point deadline) {
  wait.aborted_ = false;
  wait.timed_out_ = false;
  wait.answer_.reset();
  if (entries_.size() >= kMaxEntries && !entries_.count(host)) {
    for (auto it = entries_.begin(); it != entries_.end();)
      it = !it->second.looking_up && it->second.waiters.empty() ? entries_.erase(it) : ++it;
  }
  auto& entry = entries_[host];
  if (entry.answer && SteadyClock::now() < entry.expires)
    co_return entry.answer;
  if (!entry.looking_up && !start(host, entry))
    co_return entry.answer;
  if (SteadyClock::now() >= deadline) {
    wait.timed_out_ = true;
    co_return nullptr;
  }
  entry.waiters.push_back(&wait);
  wait.resolver_ = this;
  wait.host_ = host;
  wait.timer_.expires_at(deadline);
  boost::system::error_code ec;
  co_await wait.timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  // Still listed when the deadline or abort() ended the wait; deliver() unlisted it otherwise.
  if (wait.resolver_)
    forget(wait);
  if (wait.aborted_)
    co_return nullptr;
  if (!wait.answer_) {
    wait.timed_out_ = true;
    co_return nullptr;
  }
  co_return std::move(wait.answer_);
}

} // namespace stampede::worker
