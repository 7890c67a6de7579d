// worker/host_resolver: a lookup that hangs never holds a request past its deadline, nor a
// cancel; sessions share one lookup per host; answers are kept. A stand-in replaces
// getaddrinfo, so nothing here depends on the host's DNS.
#include "worker/host_resolver.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace stampede::worker {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A lookup that answers 192.0.2.1 only once released (a resolver that hangs until then).
struct HeldLookUp {
  std::mutex mutex;
  std::condition_variable cv;
  bool released = false;
  std::atomic<int> calls{0};

  void release() {
    std::lock_guard lock(mutex);
    released = true;
    cv.notify_all();
  }
  HostResolver::LookUpFunction function() {
    return [this](const std::string&) {
      ++calls;
      std::unique_lock lock(mutex);
      cv.wait(lock, [this] { return released; });
      auto answer = std::make_shared<HostAnswer>();
      answer->addresses.push_back(asio::ip::make_address("192.0.2.1"));
      return HostAnswerPtr(answer);
    };
  }
};

struct Outcome {
  HostAnswerPtr answer;
  bool done = false;
  bool timed_out = false;
  Clock::duration took{};
};

void spawnResolve(asio::io_context& io, HostResolver& resolver, HostWait& wait, Outcome& out,
                  Clock::time_point deadline = Clock::time_point::max()) {
  asio::co_spawn(
      io,
      [&, deadline]() -> asio::awaitable<void> {
        const auto started = Clock::now();
        out.answer = co_await resolver.resolve("held.test", wait, deadline);
        out.took = Clock::now() - started;
        out.timed_out = wait.timedOut();
        out.done = true;
      },
      asio::detached);
}

TEST_CASE("a lookup that hangs ends the wait at the deadline, abort() at once, one lookup",
          "[host_resolver]") {
  auto held = std::make_shared<HeldLookUp>();
  asio::io_context io;
  HostResolver resolver(io, held->function());
  HostWait by_deadline(io);
  HostWait by_abort(io);
  Outcome deadline_out;
  Outcome abort_out;
  spawnResolve(io, resolver, by_deadline, deadline_out, Clock::now() + 200ms);
  spawnResolve(io, resolver, by_abort, abort_out);
  asio::steady_timer abort_at(io, 50ms);
  abort_at.async_wait([&](const boost::system::error_code&) { by_abort.abort(); });
  io.run_for(2s);

  REQUIRE(deadline_out.done);
  CHECK(deadline_out.answer == nullptr);
  CHECK(deadline_out.timed_out);
  CHECK(deadline_out.took >= 190ms);
  CHECK(deadline_out.took < 500ms);
  REQUIRE(abort_out.done);
  CHECK(abort_out.answer == nullptr);
  CHECK_FALSE(abort_out.timed_out);
  CHECK(abort_out.took < 150ms);
  CHECK(held->calls == 1); // the second wait joined the first lookup
  CHECK(resolver.fresh("held.test") == nullptr);

  // The answer, when it comes, is kept for whoever asks next.
  held->release();
  const auto until = Clock::now() + 2s;
  while (!resolver.fresh("held.test") && Clock::now() < until) {
    io.restart();
    io.run_for(10ms);
  }
  auto kept = resolver.fresh("held.test");
  REQUIRE(kept);
  CHECK(kept->addresses.at(0) == asio::ip::make_address("192.0.2.1"));
  Outcome again;
  spawnResolve(io, resolver, by_deadline, again, Clock::now() + 1s);
  io.restart();
  io.run_for(100ms);
  CHECK(again.done);
  CHECK(again.answer == kept);
  CHECK(held->calls == 1);
}

TEST_CASE("waiters on one host share its lookup and all get its answer", "[host_resolver]") {
  auto held = std::make_shared<HeldLookUp>();
  asio::io_context io;
  HostResolver resolver(io, held->function());
  std::vector<std::unique_ptr<HostWait>> waits;
  std::vector<Outcome> outcomes(5);
  for (auto& out : outcomes) {
    waits.push_back(std::make_unique<HostWait>(io));
    spawnResolve(io, resolver, *waits.back(), out, Clock::now() + 5s);
  }
  asio::steady_timer release_at(io, 50ms);
  release_at.async_wait([&](const boost::system::error_code&) { held->release(); });
  io.run_for(3s);
  for (auto& out : outcomes) {
    REQUIRE(out.done);
    REQUIRE(out.answer);
    CHECK(out.answer == outcomes[0].answer);
  }
  CHECK(held->calls == 1);
}

TEST_CASE("a resolver that goes away leaves its hung lookup harmless", "[host_resolver]") {
  auto held = std::make_shared<HeldLookUp>();
  {
    asio::io_context io;
    HostResolver resolver(io, held->function());
    HostWait wait(io);
    Outcome out;
    spawnResolve(io, resolver, wait, out, Clock::now() + 50ms);
    io.run_for(1s);
    CHECK(out.done);
  } // the resolver and its io_context are gone; the lookup thread still waits
  held->release();
  std::this_thread::sleep_for(50ms); // it answers into nothing: no crash (and clean under ASan)
  CHECK(held->calls == 1);
}

TEST_CASE("lookUp resolves localhost and says why a name does not resolve", "[host_resolver]") {
  auto local = HostResolver::lookUp("localhost");
  CHECK_FALSE(local->addresses.empty());
  auto bad = HostResolver::lookUp(""); // refused by getaddrinfo itself: no query leaves
  CHECK(bad->addresses.empty());
  CHECK_FALSE(bad->error.empty());
}

} // namespace
} // namespace stampede::worker
