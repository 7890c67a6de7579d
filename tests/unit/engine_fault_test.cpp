// The engine against an HTTP client that throws: an exception that escapes a virtual user's
// iteration is an error of kind "internal" (counted, reported, halting under on_error: first),
// never a user that vanishes or a load thread that waits forever.
#include "worker/engine.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

namespace stampede::worker {
namespace {

using namespace std::chrono_literals;

// What the fake sessions did, across every load thread.
struct Tally {
  std::atomic<uint64_t> performs{0};
  std::atomic<uint64_t> throws{0};
  std::atomic<uint64_t> sessions{0};
  std::atomic<int> live_sessions{0};
};

// Answers 200 after a short wait; every `throw_every`th request throws instead, half of them
// before the wait and half after it (mid-request, with its timer armed).
class ThrowingSession final : public HttpSession {
public:
  ThrowingSession(asio::io_context& io, Tally& tally, uint64_t throw_every)
      : timer_(io), tally_(tally), throw_every_(throw_every) {
    ++tally_.sessions;
    ++tally_.live_sessions;
  }
  ~ThrowingSession() override { --tally_.live_sessions; }

  asio::awaitable<void> perform(const HttpRequest&, HttpResponse& out) override {
    const uint64_t n = ++tally_.performs;
    const bool fail = n % throw_every_ == 0;
    if (fail && (n / throw_every_) % 2 == 0) {
      ++tally_.throws;
      throw std::runtime_error("injected before the wait");
    }
    timer_.expires_after(1ms);
    boost::system::error_code ec;
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (fail) {
      ++tally_.throws;
      throw std::runtime_error("injected after the wait");
    }
    out = HttpResponse{};
    out.status = ec ? 0 : 200;
    out.error = ec ? TransportError::Cancelled : TransportError::None;
  }
  HeaderList lastResponseHeaders() const override { return {}; }
  std::optional<std::string_view> header(std::string_view) const override { return std::nullopt; }
  void cancel() noexcept override { timer_.cancel(); }

private:
  asio::steady_timer timer_;
  Tally& tally_;
  uint64_t throw_every_;
};

class ThrowingClient final : public HttpClient {
public:
  ThrowingClient(asio::io_context& io, Tally& tally, uint64_t throw_every)
      : io_(io), tally_(tally), throw_every_(throw_every) {}
  std::unique_ptr<HttpSession> newSession() override {
    return std::make_unique<ThrowingSession>(io_, tally_, throw_every_);
  }

private:
  asio::io_context& io_;
  Tally& tally_;
  uint64_t throw_every_;
};

std::shared_ptr<const common::Scenario> scenario(const std::string& load,
                                                 const std::string& on_error) {
  const std::string yaml = "name: throwing\n"
                           "target: http://127.0.0.1:9\n" // never connected to: the client is fake
                           "load: " +
                           load +
                           "\n"
                           "halt: {on_error: " +
                           on_error +
                           "}\n"
                           "flows:\n"
                           "  - name: f\n"
                           "    steps:\n"
                           "      - get: /a\n"
                           "      - get: /b\n";
  return std::make_shared<const common::Scenario>(common::loadScenarioText(yaml, "throwing.yaml"));
}

struct Outcome {
  bool finished_in_time = false;
  std::chrono::milliseconds took{};
  common::StepStats total;
  std::optional<ErrorContext> first_error;
  int active_users = -1;
  bool halted = false;
};

// Runs the scenario on 2 load threads with the throwing client; waits at most `limit`.
Outcome run(std::shared_ptr<const common::Scenario> s, Tally& tally, uint64_t throw_every,
            std::chrono::milliseconds limit) {
  common::SteadyClock clock;
  EngineOptions options;
  options.threads = 2;
  options.client_factory = [&tally, throw_every](asio::io_context& io, const common::HttpSpec&) {
    return std::make_unique<ThrowingClient>(io, tally, throw_every);
  };
  Engine engine(std::move(s), options, clock);
  const auto started = clock.now();
  engine.start(started);
  while (!engine.finished() && clock.now() < engine.endTime() + limit) {
    if (clock.now() >= engine.endTime())
      engine.finish();
    std::this_thread::sleep_for(5ms);
  }
  Outcome out;
  out.finished_in_time = engine.finished();
  out.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock.now() - started);
  if (!out.finished_in_time)
    engine.halt(); // so that the destructor can join
  engine.join();
  common::StatsBook book;
  engine.collect(book);
  out.total = book.total();
  out.first_error = engine.firstError();
  out.active_users = engine.activeUsers();
  out.halted = engine.halted();
  return out;
}

uint64_t internalErrors(const common::StepStats& s) {
  auto it = s.errors_by_kind.find("internal");
  return it == s.errors_by_kind.end() ? 0 : it->second;
}

TEST_CASE("an exception in a virtual user is an internal error; the user goes on", "[engine]") {
  Tally tally;
  auto out = run(scenario("{users: 4, duration: 100ms}", "never"), tally, 5, 3s);
  REQUIRE(out.finished_in_time);
  CHECK(out.took < 1700ms);
  CHECK(out.active_users == 0);
  REQUIRE(tally.throws > 4); // every user threw, and went on
  CHECK(internalErrors(out.total) == tally.throws);
  CHECK(out.total.errors == tally.throws);
  CHECK(out.total.requests == tally.performs);
  // Each throw replaced its session; all are gone with the users.
  CHECK(tally.sessions == 4 + tally.throws);
  CHECK(tally.live_sessions == 0);
  REQUIRE(out.first_error);
  CHECK(out.first_error->error_kind == "internal");
  CHECK(out.first_error->detail.find("injected") != std::string::npos);
  CHECK((out.first_error->step == "GET /a" || out.first_error->step == "GET /b"));
  CHECK(out.first_error->flow == "f");
}

TEST_CASE("an exception in a virtual user halts the run under on_error: first", "[engine]") {
  Tally tally;
  auto out = run(scenario("{users: 4, duration: 5s}", "first"), tally, 3, 3s);
  REQUIRE(out.finished_in_time);
  CHECK(out.halted);
  CHECK(out.took < 2s); // halted, not run to its 5 s end
  CHECK(out.active_users == 0);
  REQUIRE(out.first_error);
  CHECK(out.first_error->error_kind == "internal");
  CHECK(internalErrors(out.total) >= 1);
  CHECK(tally.live_sessions == 0);
}

TEST_CASE("open model: a throwing arrival frees its in-flight slot and its user", "[engine]") {
  Tally tally;
  // 8 slots per thread, each arrival two requests of 1 ms: hardly any would be dropped if every
  // throw gave back its slot; a leaked slot per throw would drop most of the ~300 arrivals,
  // all after the first 8 throws of a thread.
  auto out =
      run(scenario("{rate: 1500/s, duration: 200ms, max_in_flight: 16}", "never"), tally, 4, 3s);
  REQUIRE(out.finished_in_time);
  CHECK(out.active_users == 0);
  REQUIRE(tally.throws >= 20);
  CHECK(internalErrors(out.total) == tally.throws);
  CHECK(out.total.requests == tally.performs);
  CHECK(out.total.dropped < 60);
  CHECK(tally.performs > 400); // ~300 arrivals of two requests, less those cut short by a throw
  CHECK(tally.live_sessions == 0);
}

} // namespace
} // namespace stampede::worker
