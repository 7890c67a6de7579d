// Host names to addresses for one HTTP client (one load thread), without ever blocking that
// thread: a lookup runs getaddrinfo on a thread of its own, one lookup at a time per host (the
// sessions that want the same host share it), and its answer is kept for kAnswerTtl (a failure
// for kFailureTtl). A session waits for an answer only until its deadline or abort(): a
// resolver that never answers holds nothing but the lookup's own thread, never a request, a
// halt or the end of a run.
// Load thread only; the lookup threads only post their answers back to its io_context.
#pragma once

#include "common/asio.h"

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace stampede::worker {

// As curl's default DNS cache (CURLOPT_DNS_CACHE_TIMEOUT): getaddrinfo does not give the
// record's own TTL.
constexpr std::chrono::seconds kAnswerTtl{60};
// A name that does not resolve is asked again after this, not once per request.
constexpr std::chrono::seconds kFailureTtl{1};

struct HostAnswer {
  std::vector<asio::ip::address> addresses; // getaddrinfo's order, no duplicates; empty: failed
  std::string error;                        // why there is no address (gai_strerror)
};
using HostAnswerPtr = std::shared_ptr<const HostAnswer>;

class HostResolver;

// One session's wait for an answer; reused from request to request.
class HostWait {
public:
  explicit HostWait(asio::io_context& io) : timer_(io) {}
  ~HostWait();
  HostWait(const HostWait&) = delete;
  HostWait& operator=(const HostWait&) = delete;

  // Ends a wait in HostResolver::resolve() at once (it returns nullptr). A no-op when not
  // waiting; idempotent.
  void abort() noexcept;
  // After resolve() returned nullptr: true when the deadline ended the wait, not abort().
  bool timedOut() const { return timed_out_; }

private:
  friend class HostResolver;
  asio::steady_timer timer_;
  HostResolver* resolver_ = nullptr; // while waiting
  std::string host_;                 // while waiting
  HostAnswerPtr answer_;
  bool aborted_ = false;
  bool timed_out_ = false;
};

class HostResolver {
public:
  // Runs on a lookup thread, blocking: getaddrinfo (lookUp), or a test's stand-in.
  using LookUpFunction = std::function<HostAnswerPtr(const std::string& host)>;
  explicit HostResolver(asio::io_context& io, LookUpFunction look_up = &HostResolver::lookUp);
  ~HostResolver(); // lookups still running finish on their own; their answers are dropped
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // The kept answer for `host` if it is still fresh, else nullptr. No allocation.
  HostAnswerPtr fresh(const std::string& host);
  // The answer for `host`: a fresh kept one, else the one of a lookup (started here, or
  // already running for another session). nullptr when `wait` was aborted or `deadline`
  // passed first (wait.timedOut() tells which); the lookup goes on and its answer is kept.
  asio::awaitable<HostAnswerPtr> resolve(const std::string& host, HostWait& wait,
                                         std::chrono::steady_clock::time_point deadline =
                                             std::chrono::steady_clock::time_point::max());

  // The lookup every thread does, blocking: for tests and the lookup threads.
  static HostAnswerPtr lookUp(const std::string& host);

private:
  friend class HostWait;
  struct Entry {
    HostAnswerPtr answer;
    std::chrono::steady_clock::time_point expires{};
    bool looking_up = false;
    std::vector<HostWait*> waiters;
  };
  struct Mailbox;

  // Starts the lookup of `host`; false (with a failure answer kept) when no thread can start.
  bool start(const std::string& host, Entry& entry);
  void deliver(const std::string& host, HostAnswerPtr answer);
  void forget(HostWait& wait) noexcept;

  std::unordered_map<std::string, Entry> entries_;
  LookUpFunction look_up_;
  std::shared_ptr<Mailbox> mailbox_;
};

} // namespace stampede::worker
