// The engine without sockets: a fake HttpClient (EngineOptions::client_factory) whose sessions
// answer at once (posted to the io_context), after a short timer, or never (until cancelled).
// Each test runs a scenario for a few milliseconds and checks the engine's own counts against
// what the fake sessions saw.
#include "worker/engine.h"
#include "worker/feeders.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stampede::worker {
namespace {

using namespace std::chrono_literals;

// What a fake session answers to one request.
struct Answer {
  int status = 200;
  std::string body = {};
  HeaderList headers = {};
  std::chrono::milliseconds delay{0}; // 0: posted to the io_context at once
  bool hang = false;                  // answers only when cancelled
};

// A request as a fake session received it.
struct Received {
  std::string method;
  std::string target;
  std::string body;
};

using Responder = std::function<Answer(const HttpRequest&, uint64_t n)>; // n: 1, 2, ...

struct Target {
  Responder respond;
  std::mutex mutex;
  std::vector<Received> received;
  std::atomic<uint64_t> performs{0};
  std::vector<Received> log() {
    std::lock_guard lock(mutex);
    return received;
  }
};

class FakeSession final : public HttpSession {
public:
  FakeSession(asio::io_context& io, Target& target) : io_(io), timer_(io), target_(target) {}

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override {
    const uint64_t n = ++target_.performs;
    {
      std::lock_guard lock(target_.mutex);
      target_.received.push_back(
          {std::string(request.method), std::string(request.target), std::string(request.body)});
    }
    Answer answer = target_.respond(request, n);
    out = HttpResponse{};
    if (answer.hang || answer.delay.count() > 0) {
      timer_.expires_after(answer.hang ? std::chrono::milliseconds(1h) : answer.delay);
      boost::system::error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        out.error = TransportError::Cancelled;
        co_return;
      }
    } else {
      co_await asio::post(io_, asio::use_awaitable);
    }
    headers_ = std::move(answer.headers);
    body_ = std::move(answer.body);
    out.status = answer.status;
    out.body = body_;
    out.bytes_in = body_.size();
  }
  HeaderList lastResponseHeaders() const override { return headers_; }
  std::optional<std::string_view> header(std::string_view name) const override {
    for (const auto& [key, value] : headers_)
      if (key.size() == name.size() &&
          std::equal(key.begin(), key.end(), name.begin(),
                     [](char a, char b) { return std::tolower(a) == std::tolower(b); }))
        return std::string_view(value);
    return std::nullopt;
  }
  void cancel() noexcept override { timer_.cancel(); }

private:
  asio::io_context& io_;
  asio::steady_timer timer_;
  Target& target_;
  HeaderList headers_;
  std::string body_;
};

class FakeClient final : public HttpClient {
public:
  FakeClient(asio::io_context& io, Target& target) : io_(io), target_(target) {}
  std::unique_ptr<HttpSession> newSession() override {
    return std::make_unique<FakeSession>(io_, target_);
  }

private:
  asio::io_context& io_;
  Target& target_;
};

// `body`: everything after `target:` (load, http, data, flows...).
std::shared_ptr<const common::Scenario>
scenario(const std::string& body, const std::map<std::string, std::string>& files = {}) {
  common::LoadOptions options;
  options.shipped_files = &files;
  const std::string yaml =
      "name: fake\n"
      "target: http://127.0.0.1:9\n" + // never connected to: the client is fake
      body;
  return std::make_shared<const common::Scenario>(
      common::loadScenarioText(yaml, "fake.yaml", options));
}

struct Outcome {
  bool finished_in_time = false;
  std::chrono::milliseconds took{};
  common::StatsBook book;
  common::StepStats total;
  std::optional<ErrorContext> first_error;
  bool halted = false;
  std::vector<Received> received;
};

// Engine options whose load threads talk to `target` through fake clients: no sockets.
EngineOptions fakeOptions(Target& target, int threads) {
  EngineOptions options;
  options.threads = threads;
  options.client_factory = [&target](asio::io_context& io, const common::HttpSpec&) {
    return std::make_unique<FakeClient>(io, target);
  };
  return options;
}

// Runs on `threads` load threads until the engine ends by itself or the run's end plus 2 s.
// `during` is called every millisecond while it runs (say, to halt it).
Outcome run(std::shared_ptr<const common::Scenario> s, Target& target, int threads = 1,
            std::function<void(Engine&)> during = {}) {
  common::SteadyClock clock;
  Engine engine(s, fakeOptions(target, threads), clock);
  const auto started = clock.now();
  engine.start(started);
  while (!engine.finished() && clock.now() < engine.endTime() + 2s) {
    if (clock.now() >= engine.endTime())
      engine.finish();
    if (during)
      during(engine);
    std::this_thread::sleep_for(1ms);
  }
  Outcome out;
  out.finished_in_time = engine.finished();
  out.took = std::chrono::duration_cast<std::chrono::milliseconds>(clock.now() - started);
  out.halted = engine.halted();
  engine.halt(); // so that join() returns whatever happened
  engine.join();
  engine.collect(out.book);
  out.total = out.book.total();
  out.first_error = engine.firstError();
  out.received = target.log();
  return out;
}

Responder always(Answer answer) {
  return [answer](const HttpRequest&, uint64_t) { return answer; };
}

TEST_CASE("a local halt cancels the requests in flight and counts each one", "[engine]") {
  Target target;
  target.respond = always(Answer{.hang = true});
  auto out = run(scenario("load: {users: 3, duration: 10s}\n"
                          "flows: [{name: f, steps: [{get: /a}]}]\n"),
                 target, 2, [&target](Engine& engine) {
                   if (target.performs == 3)
                     engine.halt();
                 });
  REQUIRE(out.finished_in_time);
  CHECK(out.took < 2s);
  CHECK(out.halted);
  CHECK(out.total.cancelled == 3);
  CHECK(out.total.requests == 0);
  CHECK(out.total.errors == 0);
  CHECK(!out.first_error);
}

TEST_CASE("the first error halts the worker under on_error: first; the rest is cancelled",
          "[engine]") {
  Target target;
  // The first request fails at once; the other users' requests wait until cancelled.
  target.respond = [](const HttpRequest&, uint64_t n) {
    return n == 1 ? Answer{.status = 500} : Answer{.hang = true};
  };
  auto out = run(scenario("load: {users: 3, duration: 10s}\n"
                          "halt: {on_error: first}\n"
                          "flows: [{name: f, steps: [{get: /a}]}]\n"),
                 target);
  REQUIRE(out.finished_in_time);
  CHECK(out.took < 2s);
  CHECK(out.halted);
  CHECK(target.performs == 3);
  CHECK(out.total.requests == 1);
  CHECK(out.total.errors == 1);
  CHECK(out.total.cancelled == 2);
  REQUIRE(out.first_error);
  CHECK(out.first_error->error_kind == "http_500");
  CHECK(out.first_error->url == "http://127.0.0.1:9/a");
}

TEST_CASE("open model: an arrival over max_in_flight is dropped and takes no iteration",
          "[engine]") {
  Target target;
  target.respond = always(Answer{.delay = 20ms});
  // 1,000 arrivals a second, one slot, 20 ms a request: about 19 of every 20 arrivals find
  // the slot taken. Were a dropped arrival to take from the budget of 3, one would run.
  auto out = run(scenario("load: {rate: 1000/s, duration: 5s, max_in_flight: 1, iterations: 3}\n"
                          "flows: [{name: f, steps: [{get: /a}]}]\n"),
                 target);
  REQUIRE(out.finished_in_time);
  CHECK(out.took < 2s); // ended by the budget, not the duration
  CHECK(out.total.requests == 3);
  CHECK(target.performs == 3);
  CHECK(out.total.dropped >= 10);
  CHECK(out.total.errors == 0);
}

std::map<std::string, std::string> idsCsv(int rows) {
  std::string csv = "id\n";
  for (int i = 1; i <= rows; ++i)
    csv += std::to_string(i) + "\n";
  return {{"ids.csv", csv}};
}

std::vector<std::string> targets(const std::vector<Received>& received) {
  std::vector<std::string> out;
  for (const auto& r : received)
    out.push_back(r.target);
  return out;
}

std::vector<std::string> itemTargets(int rows) {
  std::vector<std::string> out;
  for (int i = 1; i <= rows; ++i)
    out.push_back("/item/" + std::to_string(i));
  return out;
}

TEST_CASE("feeder order sequence takes the rows in file order", "[engine][feeder]") {
  Target target;
  target.respond = always(Answer{});
  auto out = run(scenario("load: {users: 1, duration: 5s, iterations: 20}\n"
                          "data: {ids: {csv: ids.csv}}\n"
                          "flows: [{name: f, steps: [{get: '/item/{{ids.id}}'}]}]\n",
                          idsCsv(20)),
                 target);
  REQUIRE(out.finished_in_time);
  CHECK(targets(out.received) == itemTargets(20));
}

TEST_CASE("feeder order shuffle takes every row once per pass, not in file order",
          "[engine][feeder]") {
  Target target;
  target.respond = always(Answer{});
  auto out = run(scenario("load: {users: 1, duration: 5s, iterations: 20}\n"
                          "data: {ids: {csv: ids.csv, order: shuffle}}\n"
                          "flows: [{name: f, steps: [{get: '/item/{{ids.id}}'}]}]\n",
                          idsCsv(20)),
                 target);
  REQUIRE(out.finished_in_time);
  auto got = targets(out.received);
  CHECK(got != itemTargets(20)); // 1 in 20! that a shuffle leaves them so
  std::sort(got.begin(), got.end());
  auto want = itemTargets(20);
  std::sort(want.begin(), want.end());
  CHECK(got == want);
}

TEST_CASE("feeder order random draws rows with repeats and never runs out", "[engine][feeder]") {
  Target target;
  target.respond = always(Answer{});
  // on_exhausted: stop would end the user after 5 draws of a sequence or a shuffle.
  auto out = run(scenario("load: {users: 1, duration: 5s, iterations: 40}\n"
                          "data: {ids: {csv: ids.csv, order: random, on_exhausted: stop}}\n"
                          "flows: [{name: f, steps: [{get: '/item/{{ids.id}}'}]}]\n",
                          idsCsv(5)),
                 target);
  REQUIRE(out.finished_in_time);
  CHECK(out.total.requests == 40);
  CHECK(!out.first_error);
  auto got = targets(out.received);
  const auto rows = itemTargets(5);
  CHECK(std::all_of(got.begin(), got.end(), [&](const std::string& t) {
    return std::find(rows.begin(), rows.end(), t) != rows.end();
  }));
  // Not a sequence in disguise: (1/5)^39 that it takes row after row, in order.
  std::vector<std::string> in_order;
  for (int i = 0; i < 40; ++i)
    in_order.push_back(rows[size_t(i % 5)]);
  CHECK(got != in_order);
}

TEST_CASE("a feeder with on_exhausted: stop ends the users after one pass, without an error",
          "[engine][feeder]") {
  Target target;
  target.respond = always(Answer{});
  auto out = run(scenario("load: {users: 3, duration: 5s}\n"
                          "data: {ids: {csv: ids.csv, on_exhausted: stop}}\n"
                          "flows: [{name: f, steps: [{get: '/item/{{ids.id}}'}]}]\n",
                          idsCsv(20)),
                 target, 2);
  REQUIRE(out.finished_in_time);
  CHECK(out.took < 2s); // every user stopped, long before the 5 s
  CHECK(out.total.requests == 20);
  CHECK(out.total.errors == 0);
  CHECK(!out.halted);
  CHECK(!out.first_error);
  auto got = targets(out.received);
  std::sort(got.begin(), got.end());
  auto want = itemTargets(20);
  std::sort(want.begin(), want.end());
  CHECK(got == want); // each row once
}

TEST_CASE("a feeder with on_exhausted: halt reports data_exhausted and halts", "[engine][feeder]") {
  Target target;
  target.respond = always(Answer{});
  auto out = run(scenario("load: {users: 2, duration: 5s}\n"
                          "data: {ids: {csv: ids.csv, on_exhausted: halt}}\n"
                          "flows: [{name: f, steps: [{get: '/item/{{ids.id}}'}]}]\n",
                          idsCsv(5)),
                 target);
  REQUIRE(out.finished_in_time);
  CHECK(out.took < 2s);
  CHECK(out.halted);
  CHECK(out.total.requests == 5);
  REQUIRE(out.first_error);
  CHECK(out.first_error->error_kind == "data_exhausted");
  CHECK(out.first_error->data_exhausted);
  CHECK(out.first_error->detail.find("ids") != std::string::npos);
}

TEST_CASE("redirects: every hop is a request of the step, 303 turns a POST into a GET",
          "[engine][redirect]") {
  Target target;
  target.respond = [](const HttpRequest& request, uint64_t) {
    if (request.target == "/a")
      return Answer{.status = 303, .headers = {{"Location", "/b/x"}}};
    if (request.target == "/b/x") // relative: to /b/y
      return Answer{.status = 307, .headers = {{"Location", "y"}}};
    if (request.target == "/b/y")
      return Answer{.status = 302, .headers = {{"location", "http://127.0.0.1:9/c"}}};
    return Answer{.status = 200, .body = "done"};
  };
  auto out = run(scenario("load: {users: 1, duration: 5s, iterations: 1}\n"
                          "http: {follow_redirects: true}\n"
                          "flows: [{name: f, steps: [{post: /a, body: payload, "
                          "expect: {body_contains: done}}]}]\n"),
                 target);
  REQUIRE(out.finished_in_time);
  REQUIRE(out.received.size() == 4);
  CHECK(out.received[0].method == "POST");
  CHECK(out.received[0].body == "payload");
  CHECK(out.received[1].method == "GET"); // after the 303
  CHECK(out.received[1].body.empty());
  CHECK(out.received[2].method == "GET"); // a 307 keeps the method, GET by now
  CHECK(out.received[2].target == "/b/y");
  CHECK(out.received[3].target == "/c");
  CHECK(out.total.requests == 4);
  CHECK(out.total.errors == 0);
}

TEST_CASE("redirects: 307 keeps a POST and its body; without follow_redirects a 3xx is final",
          "[engine][redirect]") {
  Target target;
  target.respond = [](const HttpRequest& request, uint64_t) {
    if (request.target == "/a")
      return Answer{.status = 307, .headers = {{"Location", "/b"}}};
    return Answer{};
  };
  auto followed = run(scenario("load: {users: 1, duration: 5s, iterations: 1}\n"
                               "http: {follow_redirects: true}\n"
                               "flows: [{name: f, steps: [{post: /a, body: payload}]}]\n"),
                      target);
  REQUIRE(followed.received.size() == 2);
  CHECK(followed.received[1].method == "POST");
  CHECK(followed.received[1].body == "payload");
  CHECK(followed.total.requests == 2);

  Target plain;
  plain.respond = target.respond;
  auto kept = run(scenario("load: {users: 1, duration: 5s, iterations: 1}\n"
                           "flows: [{name: f, steps: [{post: /a, body: payload}]}]\n"),
                  plain);
  CHECK(kept.received.size() == 1);
  CHECK(kept.total.requests == 1);
  CHECK(kept.total.errors == 0);
}

// One request of a step with `expect`, answered with `answer`: the error kind, or "" when it
// passed.
std::string judged(const std::string& expect, Answer answer) {
  Target target;
  target.respond = always(std::move(answer));
  auto out = run(scenario("load: {users: 1, duration: 5s, iterations: 1}\n"
                          "flows: [{name: f, steps: [{get: /a, expect: " +
                          expect + "}]}]\n"),
                 target);
  REQUIRE(out.finished_in_time);
  REQUIRE(out.total.requests == 1);
  CHECK(out.total.errors == (out.first_error ? 1u : 0u));
  return out.first_error ? out.first_error->error_kind : "";
}

TEST_CASE("every expect kind passes and fails with its own error kind", "[engine][expect]") {
  CHECK(judged("{status: 201}", Answer{.status = 201}) == "");
  CHECK(judged("{status: 201}", Answer{.status = 200}) == "http_200");
  CHECK(judged("{status: [200, 404]}", Answer{.status = 404}) == "");

  CHECK(judged("{body_contains: ok}", Answer{.body = "all ok"}) == "");
  CHECK(judged("{body_contains: ok}", Answer{.body = "fine"}) == "expect_body");

  CHECK(judged("{json: {$.a.b: 42}}", Answer{.body = R"({"a": {"b": 42}})"}) == "");
  CHECK(judged("{json: {$.a.b: 42}}", Answer{.body = R"({"a": {"b": "42"}})"}) == "expect_json");
  CHECK(judged("{json: {$.a.b: 42}}", Answer{.body = R"({"a": {}})"}) == "expect_json");
  CHECK(judged("{json: {$.a.b: 42}}", Answer{.body = "not json"}) == "expect_json");
  // Compared as the values' compact JSON text would be: 42 is not 42.0, nor 0.0 -0.0, nor true
  // 1; numbers past int64 and escaped strings compare by value.
  CHECK(judged("{json: {$.a: 42}}", Answer{.body = R"({"a": 42.0})"}) == "expect_json");
  CHECK(judged("{json: {$.a: 0.5}}", Answer{.body = R"({"a": 5e-1})"}) == "");
  CHECK(judged("{json: {$.a: 0.0}}", Answer{.body = R"({"a": -0.0})"}) == "expect_json");
  CHECK(judged("{json: {$.a: 18446744073709551615}}",
               Answer{.body = R"({"a": 18446744073709551615})"}) == "");
  CHECK(judged("{json: {$.a: -1}}", Answer{.body = R"({"a": 18446744073709551615})"}) ==
        "expect_json");
  CHECK(judged("{json: {$.a: ok}}", Answer{.body = R"({"a": {"x": "ok"}})"}) == "expect_json");
  CHECK(judged("{json: {$.a: null}}", Answer{.body = R"({"a": null})"}) == "");
  CHECK(judged("{json: {$.a: true}}", Answer{.body = R"({"a": 1})"}) == "expect_json");
  CHECK(judged("{json: {$.a: \"caf\u00e9\"}}", Answer{.body = R"({"a": "café"})"}) == "");

  CHECK(judged("{header: {Content-Type: json}}",
               Answer{.headers = {{"content-type", "application/json"}}}) == "");
  CHECK(judged("{header: {Content-Type: json}}", Answer{.headers = {{"Content-Type", "text"}}}) ==
        "expect_header");
  CHECK(judged("{header: {Content-Type: json}}", Answer{}) == "expect_header");

  CHECK(judged("{max_latency: 1s}", Answer{}) == "");
  CHECK(judged("{max_latency: 5ms}", Answer{.delay = 30ms}) == "expect_latency");
}

TEST_CASE("every capture kind takes its value; one that finds nothing is capture_missing",
          "[engine][capture]") {
  Target target;
  target.respond = [](const HttpRequest& request, uint64_t) {
    if (request.target == "/login")
      return Answer{.body = R"({"token": "t1", "n": 7, "note": "order=42"})",
                    .headers = {{"X-Session", "s9"}}};
    return Answer{};
  };
  auto out = run(scenario("load: {users: 1, duration: 5s, iterations: 1}\n"
                          "flows:\n"
                          "  - name: f\n"
                          "    steps:\n"
                          "      - get: /login\n"
                          "        capture:\n"
                          "          token: {json: $.token}\n"
                          "          n: {json: $.n}\n"
                          "          session: {header: x-session}\n"
                          "          order: {regex: 'order=(\\d+)'}\n"
                          "      - get: '/use/{{token}}/{{n}}/{{session}}/{{order}}'\n"),
                 target);
  REQUIRE(out.finished_in_time);
  CHECK(out.total.errors == 0);
  REQUIRE(out.received.size() == 2);
  CHECK(out.received[1].target == "/use/t1/7/s9/42");

  for (const std::string capture :
       {"{json: $.missing}", "{header: X-Missing}", "{regex: 'nothing=(\\d+)'}"}) {
    Target missing;
    missing.respond = always(Answer{.body = R"({"token": "t1"})"});
    auto failed = run(scenario("load: {users: 1, duration: 5s, iterations: 1}\n"
                               "flows:\n"
                               "  - name: f\n"
                               "    steps:\n"
                               "      - get: /login\n"
                               "        capture: {v: " +
                               capture +
                               "}\n"
                               "      - get: '/use/{{v}}'\n"),
                      missing);
    INFO(capture);
    REQUIRE(failed.first_error);
    CHECK(failed.first_error->error_kind == "capture_missing");
    CHECK(failed.total.errors == 1);
  }
}

// A clock that moves only when the test says, read by every load thread.
class ManualClock final : public common::Clock {
public:
  common::SteadyTime now() const override {
    return common::SteadyTime(std::chrono::nanoseconds(ns_.load(std::memory_order_acquire)));
  }
  void advance(std::chrono::nanoseconds by) { ns_.fetch_add(by.count()); }

private:
  std::atomic<int64_t> ns_{std::chrono::nanoseconds(1000s).count()};
};

// Waits (real time, at most 1 s) until `done` holds.
bool eventually(const std::function<bool()>& done) {
  const auto give_up = std::chrono::steady_clock::now() + 1s;
  while (!done() && std::chrono::steady_clock::now() < give_up)
    std::this_thread::sleep_for(1ms);
  return done();
}

TEST_CASE("think pauses and the end of the run follow the injected clock", "[engine][clock]") {
  Target target;
  target.respond = always(Answer{});
  ManualClock clock;
  EngineOptions options = fakeOptions(target, 1);
  Engine engine(scenario("load: {users: 1, duration: 60s}\n"
                         "flows: [{name: f, steps: [{get: /a}, {think: 10s}, {get: /b}]}]\n"),
                options, clock);
  engine.start(clock.now());
  REQUIRE(eventually([&] { return target.performs == 1; }));
  std::this_thread::sleep_for(30ms); // real time passes; the clock does not
  CHECK(target.performs == 1);
  clock.advance(9s);
  std::this_thread::sleep_for(30ms);
  CHECK(target.performs == 1);
  clock.advance(1s);                                         // the think pause is over
  REQUIRE(eventually([&] { return target.performs == 3; })); // /b, then /a of the next round
  CHECK(!engine.finished());
  clock.advance(60s); // past the end: the pause ends early, and so does the run
  REQUIRE(eventually([&] { return engine.finished(); })); // else halted and joined by ~Engine
  engine.join();
  const auto log = target.log();
  REQUIRE(log.size() == 3);
  CHECK(log[1].target == "/b");
  CHECK(log[2].target == "/a");
  common::StatsBook book;
  engine.collect(book);
  CHECK(book.total().requests == 3);
}

TEST_CASE("ramp-down: users the load curve lets go stop sending, by the injected clock",
          "[engine][clock]") {
  Target target;
  target.respond = always(Answer{});
  ManualClock clock;
  EngineOptions options = fakeOptions(target, 1);
  // Two users: up to 2 over 10 s, hold 10 s, down to 0 over 10 s, hold 10 s. User 1 runs
  // while the level is above 1 (5 s to 25 s), user 0 while it is above 0 (0 s to 30 s).
  Engine engine(scenario("load:\n"
                         "  stages: [{to: 2, over: 10s}, {hold: 10s}, {to: 0, over: 10s}, "
                         "{hold: 10s}]\n"
                         "flows: [{name: f, steps: [{get: '/a/{{vu}}'}, {think: 1s}]}]\n"),
                options, clock);
  const auto t0 = clock.now();
  engine.start(t0);
  // Each second of the clock, the wanted users send one request each.
  auto sentBy = [&](std::string_view target_path) {
    const auto log = target.log();
    return std::count_if(log.begin(), log.end(),
                         [&](const Received& r) { return r.target == target_path; });
  };
  std::this_thread::sleep_for(20ms);
  CHECK(target.performs == 0); // level 0 at t0: nobody is wanted yet
  auto advanceTo = [&](std::chrono::seconds t) {
    while (clock.now() < t0 + t) {
      clock.advance(1s);
      std::this_thread::sleep_for(3ms);
    }
  };
  advanceTo(20s);
  const auto user1_at_20s = sentBy("/a/1");
  CHECK(eventually([&] { return sentBy("/a/0") > 0; }));
  CHECK(user1_at_20s > 0);
  advanceTo(26s); // user 1 let go at 25 s
  const auto user1_at_26s = sentBy("/a/1");
  const auto user0_at_26s = sentBy("/a/0");
  advanceTo(29s);
  CHECK(sentBy("/a/1") == user1_at_26s);                            // parked
  CHECK(eventually([&] { return sentBy("/a/0") > user0_at_26s; })); // still wanted
  advanceTo(31s);                                                   // user 0 let go at 30 s
  const auto all_at_31s = target.performs.load();
  advanceTo(39s);
  CHECK(target.performs == all_at_31s);
  // Neither user is wanted again: both have ended, before the run's end at 40 s.
  REQUIRE(eventually([&] { return engine.finished(); })); // else halted and joined by ~Engine
  engine.join();
  common::StatsBook book;
  engine.collect(book);
  CHECK(book.total().requests == target.performs);
  CHECK(book.total().errors == 0);
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

TEST_CASE("capacity run: arrivals follow each probe's rate (setRate), none between probes",
          "[engine][capacity]") {
  Target target;
  target.respond = always(Answer{});
  ManualClock clock;
  Engine engine(scenario("capacity: {start: 10/s, probe: 2s, warmup: 0s}\n"
                         "flows: [{name: f, steps: [{get: /a}]}]\n"),
                fakeOptions(target, 2), clock);
  const auto t0 = clock.now();
  engine.start(t0);
  // Steps of 10 ms of the engine's clock, each given real time for the due arrivals to go.
  auto advanceTo = [&](std::chrono::milliseconds at) {
    while (clock.now() < t0 + at) {
      clock.advance(10ms);
      std::this_thread::sleep_for(2ms);
    }
  };
  advanceTo(1000ms);
  CHECK(target.performs == 0); // no probe yet: no arrival
  engine.setRate(100, t0 + 1s, t0 + 2s);
  advanceTo(2500ms);
  // k / 100 s after the start, k = 0..99, on 2 threads (even and odd k).
  REQUIRE(eventually([&] { return target.performs == 100; }));
  advanceTo(3000ms);
  CHECK(target.performs == 100); // between probes: none
  engine.setRate(50, t0 + 3s, t0 + 5s);
  advanceTo(6000ms);
  REQUIRE(eventually([&] { return target.performs == 200; }));
  std::this_thread::sleep_for(20ms);
  CHECK(target.performs == 200);
  engine.halt();
  engine.join();
  common::StatsBook book;
  engine.collect(book);
  CHECK(book.total().requests == 200);
  CHECK(book.total().dropped == 0);
  CHECK(book.total().schedule_lag_us.count() == 200); // one lag sample per arrival
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

// The load threads' CPU time over wall time, over 300 ms of an open-model run at `rate`.
double busyAt(const std::string& rate) {
  Target target;
  target.respond = always(Answer{});
  common::SteadyClock clock;
  Engine engine(scenario("load: {rate: " + rate +
                         ", duration: 10s}\n"
                         "flows: [{name: f, steps: [{get: /a}]}]\n"),
                fakeOptions(target, 1), clock);
  engine.start(clock.now());
  std::this_thread::sleep_for(100ms);
  engine.loadBusy(); // from here
  std::this_thread::sleep_for(300ms);
  const double busy = engine.loadBusy();
  engine.halt();
  engine.join();
  return busy;
}

TEST_CASE("loadBusy: a load thread that cannot keep up reads busy, an idle one does not",
          "[engine][capacity]") {
  const double idle = busyAt("10/s");
  // Far more arrivals than a thread can start: it never waits (on a shared machine it gets
  // what the scheduler gives it, still far more than an idle one: a load average of 15 on
  // 2 cores left it about 0.13).
  const double flat_out = busyAt("10000000/s");
  CHECK(idle < 0.1);
  CHECK(flat_out > 0.1);
  CHECK(flat_out > 3 * idle);
}

} // namespace
} // namespace stampede::worker

namespace stampede::worker {
namespace {

TEST_CASE("capacity run: a rate no worker can keep, or no number, does not hang the engine",
          "[engine][capacity]") {
  Target target;
  target.respond = always(Answer{});
  common::SteadyClock clock;
  Engine engine(scenario("capacity: {start: 10/s, probe: 2s, warmup: 0s, max_in_flight: 4}\n"
                         "flows: [{name: f, steps: [{get: /a}]}]\n"),
                fakeOptions(target, 1), clock);
  const auto t0 = clock.now();
  engine.start(t0);
  engine.setRate(std::nan(""), t0, t0 + 50ms);
  engine.setRate(1e300, t0 + 50ms, t0 + 60ms);
  engine.setRate(100, t0 + 100ms, t0 + 200ms);
  // The huge probe drops what it cannot start, yields, and ends; the next one runs on time.
  REQUIRE(eventually([&] { return target.performs >= 10; }));
  engine.halt();
  REQUIRE(eventually([&] { return engine.finished(); }));
  engine.join();
  common::StatsBook book;
  engine.collect(book);
  CHECK(book.total().dropped > 0);
}

} // namespace
} // namespace stampede::worker

TEST_CASE("feeder cursors start where a place had reached and report their positions",
          "[engine][feeder]") {
  stampede::common::Feeder seq;
  seq.name = "ids";
  seq.on_exhausted = stampede::common::Feeder::OnExhausted::Stop;
  for (int i = 0; i < 5; ++i)
    seq.rows.push_back({std::to_string(i)});
  stampede::common::Feeder wrap = seq;
  wrap.on_exhausted = stampede::common::Feeder::OnExhausted::Wrap;
  const std::vector<stampede::common::Feeder> data{seq, wrap};
  std::mt19937_64 rng(1);
  const std::vector<uint64_t> start{3, 7};
  stampede::worker::Feeders feeders(data, start);
  CHECK(feeders.drawRow(0, rng) == 3u);
  CHECK(feeders.drawRow(0, rng) == 4u);
  CHECK_FALSE(feeders.drawRow(0, rng).has_value()); // stop: no row of the slice used twice
  CHECK(feeders.drawRow(1, rng) == 2u);             // wrap: the pass goes on at 7 % 5
  CHECK(feeders.positions() == std::vector<uint64_t>{6, 8});
}

TEST_CASE("a shuffle feeder's order follows the seed: a place taken over repeats it",
          "[engine][feeder]") {
  stampede::common::Feeder shuffle;
  shuffle.name = "ids";
  shuffle.order = stampede::common::Feeder::Order::Shuffle;
  shuffle.on_exhausted = stampede::common::Feeder::OnExhausted::Stop;
  for (int i = 0; i < 50; ++i)
    shuffle.rows.push_back({std::to_string(i)});
  const std::vector<stampede::common::Feeder> data{shuffle, shuffle};
  std::mt19937_64 rng(1);
  const auto draw = [&](stampede::worker::Feeders& feeders, size_t f, int n) {
    std::vector<size_t> rows;
    for (int i = 0; i < n; ++i)
      if (auto row = feeders.drawRow(f, rng))
        rows.push_back(*row);
    return rows;
  };
  // The place's first worker drew 20 rows; the one taking its place starts at 20 with the same
  // seed: together, every row once.
  stampede::worker::Feeders first(data, {}, 42);
  const auto before = draw(first, 0, 20);
  const std::vector<uint64_t> start{20, 0};
  stampede::worker::Feeders next(data, start, 42);
  auto rows = draw(next, 0, 50);
  CHECK(rows.size() == 30);
  rows.insert(rows.end(), before.begin(), before.end());
  std::sort(rows.begin(), rows.end());
  CHECK(std::adjacent_find(rows.begin(), rows.end()) == rows.end());
  CHECK(rows.size() == 50);
  // Each feeder its own order; another seed (another place, another run) another one.
  stampede::worker::Feeders again(data, {}, 42);
  CHECK(draw(again, 0, 50) != draw(again, 1, 50));
  stampede::worker::Feeders other(data, {}, 43);
  stampede::worker::Feeders same(data, {}, 42);
  CHECK(draw(other, 0, 50) != draw(same, 0, 50));
}
