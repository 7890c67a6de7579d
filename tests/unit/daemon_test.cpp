// The worker daemon's control state machine, driven from the test over inproc:// by a DEALER
// that plays the master: Start before Prepare, Busy for a second master, Final re-sent until
// acked (on a clock the test advances), and a refused Prepare. The scenario aims at a closed
// loopback port and ignores its errors: no HTTP target is needed.
#include "common/load_plan.h"
#include "common/protocol.h"
#include "common/scenario.h"
#include "common/template.h"
#include "worker/daemon.h"
#include "worker/prepare_run.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>

namespace {

using namespace std::chrono_literals;
using namespace stampede;
using Clock = std::chrono::steady_clock;

constexpr const char* kScenario = "name: daemon test\n"
                                  "target: http://127.0.0.1:9\n"
                                  "halt: {on_error: never}\n"
                                  "load: {users: 1, duration: 200ms}\n"
                                  "flows:\n"
                                  "  - name: one\n"
                                  "    think: 50ms\n"
                                  "    steps: [{get: /}]\n";

int64_t nowNs() {
  return common::steadyNs(Clock::now());
}

// A clock that moves only when the test says, read by the daemon and its engine.
class ManualClock final : public common::Clock {
public:
  common::SteadyTime now() const override {
    return common::SteadyTime(std::chrono::nanoseconds(ns_.load(std::memory_order_acquire)));
  }
  void advance(std::chrono::nanoseconds by) { ns_.fetch_add(by.count()); }

private:
  std::atomic<int64_t> ns_{std::chrono::nanoseconds(1000s).count()};
};

// A daemon listening on its own inproc endpoint, served on a thread until destroyed.
// `clock`: its time (nullptr: the steady clock); `allow_target`: its --allow-target.
class Daemon {
public:
  explicit Daemon(zmq::context_t& context, const common::Clock* clock = nullptr,
                  const std::string& allow_target = "")
      : endpoint_("inproc://daemon-test-" + std::to_string(next_++)),
        daemon_(context, options(endpoint_, clock, allow_target)) {
    daemon_.open();
    thread_ = std::thread([this] { daemon_.run(stop_); });
  }
  ~Daemon() {
    stop_ = true;
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }
  const worker::DaemonCounters& counters() const { return daemon_.counters(); }

private:
  static worker::DaemonOptions options(const std::string& endpoint, const common::Clock* clock,
                                       const std::string& allow_target) {
    worker::DaemonOptions o;
    o.listen = endpoint;
    o.threads = 1;
    o.quiet = true;
    o.clock = clock;
    o.allow_target = allow_target;
    return o;
  }

  static inline std::atomic<int> next_{0};
  std::string endpoint_;
  std::atomic<bool> stop_{false};
  worker::WorkerDaemon daemon_;
  std::thread thread_;
};

// The master's side: a DEALER that numbers what it sends and reads envelopes back.
class Master {
public:
  Master(zmq::context_t& context, const std::string& endpoint)
      : socket_(context, zmq::socket_type::dealer) {
    socket_.set(zmq::sockopt::linger, 0);
    socket_.connect(endpoint);
  }
  void send(wire::Envelope envelope) {
    envelope.set_protocol(common::kProtocolVersion);
    envelope.set_run_id(run_id_);
    envelope.set_seq(++seq_);
    socket_.send(zmq::buffer(common::encodeEnvelope(envelope)));
  }
  // The next envelope whose body is `body`, skipping others (heartbeats, stats, errors);
  // nullopt when none comes within `wait`.
  std::optional<wire::Envelope> expect(wire::Envelope::BodyCase body,
                                       std::chrono::milliseconds wait = 1500ms) {
    const auto deadline = Clock::now() + wait;
    for (auto now = Clock::now(); now < deadline; now = Clock::now()) {
      zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1,
                std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now) + 1ms);
      zmq::message_t frame;
      if (!socket_.recv(frame, zmq::recv_flags::dontwait))
        continue;
      auto envelope = common::decodeEnvelope(frame.data(), frame.size());
      REQUIRE(envelope);
      if (envelope->body_case() == body)
        return envelope;
    }
    return std::nullopt;
  }
  void probe() {
    wire::Envelope e;
    e.mutable_probe()->set_master_ns(nowNs());
    send(e);
  }
  // Probe, Hello, Welcome: the daemon serves this master with run id `run_id`.
  void handshake(uint64_t run_id) {
    probe();
    REQUIRE(expect(wire::Envelope::kHello));
    run_id_ = run_id;
    wire::Envelope e;
    e.mutable_welcome()->set_worker_count(1);
    e.mutable_welcome()->set_heartbeat_timeout_ms(10000);
    send(e);
  }
  void prepare(const std::string& yaml) {
    wire::Envelope e;
    e.mutable_prepare()->set_scenario_yaml(yaml);
    e.mutable_prepare()->set_scenario_file("daemon_test.yaml");
    send(e);
  }
  // The start barrier at `at_ns` on the daemon's clock (the Welcome's offset is 0).
  void start(int64_t at_ns = nowNs()) {
    wire::Envelope e;
    e.mutable_start()->set_start_master_ns(at_ns);
    send(e);
  }

private:
  zmq::socket_t socket_;
  uint64_t run_id_ = 0;
  uint64_t seq_ = 0;
};

// Polls `done` for up to a second.
template <typename F> bool eventually(F done) {
  for (const auto deadline = Clock::now() + 1s; Clock::now() < deadline;
       std::this_thread::sleep_for(5ms))
    if (done())
      return true;
  return done();
}

} // namespace

TEST_CASE("daemon: a Start before Prepare is dropped and starts no run", "[daemon]") {
  zmq::context_t context;
  Daemon daemon(context);
  Master master(context, daemon.endpoint());
  master.handshake(7);
  master.start();
  CHECK(eventually([&] { return daemon.counters().dropped_messages.load() == 1; }));
  CHECK(daemon.counters().runs == 0);
  // Still in its handshake: a Prepare after it is served (the dropped Start broke nothing).
  master.prepare(kScenario);
  CHECK(master.expect(wire::Envelope::kReady));
  CHECK(daemon.counters().runs == 0);
}

TEST_CASE("daemon: a second master gets Busy while the first is served", "[daemon]") {
  zmq::context_t context;
  Daemon daemon(context);
  Master first(context, daemon.endpoint());
  first.handshake(7);
  Master second(context, daemon.endpoint());
  second.probe();
  auto busy = second.expect(wire::Envelope::kBusy);
  REQUIRE(busy);
  CHECK(busy->busy().reason() == "serving another master");
  CHECK(busy->run_id() == 0);
  // The daemon counts the reply just after sending it.
  CHECK(eventually([&] { return daemon.counters().busy_replies.load() == 1; }));
  // The first master is still the one served.
  first.prepare(kScenario);
  CHECK(first.expect(wire::Envelope::kReady));
}

TEST_CASE("daemon: the Final is re-sent each second of its clock until acked, then idle",
          "[daemon]") {
  zmq::context_t context;
  ManualClock clock;
  Daemon daemon(context, &clock);
  Master master(context, daemon.endpoint());
  master.handshake(7);
  master.prepare(kScenario);
  REQUIRE(master.expect(wire::Envelope::kReady));
  master.start(common::steadyNs(clock.now()));
  REQUIRE(eventually([&] { return daemon.counters().runs.load() == 1; }));
  // Past the 200 ms run (and its 50 ms think pauses): the user ends, and the Final goes out.
  clock.advance(300ms);
  auto final = master.expect(wire::Envelope::kFinal);
  REQUIRE(final);
  CHECK_FALSE(final->final().halted());
  // Not again until a second of the daemon's clock has passed ...
  clock.advance(900ms);
  CHECK_FALSE(master.expect(wire::Envelope::kFinal, 100ms));
  // ... then again, the same figures under a new sequence number.
  clock.advance(100ms);
  auto again = master.expect(wire::Envelope::kFinal, 500ms);
  REQUIRE(again);
  CHECK(again->seq() > final->seq());
  CHECK(again->final().stats().interval() == final->final().stats().interval());
  clock.advance(1s);
  CHECK(master.expect(wire::Envelope::kFinal, 500ms));

  master.send([] {
    wire::Envelope e;
    e.mutable_final_ack();
    return e;
  }());
  // Idle once the ack is in: a new master's Probe gets Hello, not Busy ...
  Master next(context, daemon.endpoint());
  next.probe();
  CHECK(next.expect(wire::Envelope::kHello));
  CHECK(daemon.counters().busy_replies == 0);
  // ... and no Final follows the ack, however far the clock moves.
  clock.advance(1500ms);
  CHECK_FALSE(master.expect(wire::Envelope::kFinal, 100ms));
  CHECK(daemon.counters().runs == 1);
}

TEST_CASE("daemon: a scenario outside --allow-target is Refused and counted, then idle",
          "[daemon]") {
  zmq::context_t context;
  Daemon daemon(context, nullptr, "10.255.255.0/24");
  Master master(context, daemon.endpoint());
  master.handshake(7);
  master.prepare(kScenario);
  auto refused = master.expect(wire::Envelope::kRefused);
  REQUIRE(refused);
  CHECK_THAT(refused->refused().reason(), Catch::Contains("127.0.0.1"));
  CHECK(eventually([&] { return daemon.counters().refused_scenarios.load() == 1; }));
  master.start();
  CHECK(daemon.counters().runs == 0);
  Master next(context, daemon.endpoint());
  next.probe();
  CHECK(next.expect(wire::Envelope::kHello));
}

TEST_CASE("daemon: a bad scenario is Refused with the loader's message, then idle", "[daemon]") {
  zmq::context_t context;
  Daemon daemon(context);
  Master master(context, daemon.endpoint());
  master.handshake(7);
  const std::string bad = "name: bad\ntarget: http://127.0.0.1:9\nload: {users: -1}\n";
  std::string loader_says;
  try {
    common::loadScenarioText(bad, "daemon_test.yaml");
  } catch (const std::exception& e) {
    loader_says = e.what();
  }
  REQUIRE_THAT(loader_says, Catch::Contains("daemon_test.yaml"));
  master.prepare(bad);
  auto refused = master.expect(wire::Envelope::kRefused);
  REQUIRE(refused);
  CHECK(refused->refused().reason() == loader_says);
  CHECK(daemon.counters().runs == 0);
  // Idle again: another master is answered with Hello, not Busy.
  Master next(context, daemon.endpoint());
  next.probe();
  CHECK(next.expect(wire::Envelope::kHello));
  CHECK(daemon.counters().busy_replies == 0);
}

TEST_CASE("prepareRun: the scenario from what the Prepare ships, never this host's env or disk",
          "[daemon]") {
  ::setenv("STAMPEDE_DAEMON_TEST_TOKEN", "from-this-host", 1);
  wire::Prepare prepare;
  prepare.set_scenario_yaml("name: shipped\n"
                            "target: http://127.0.0.1:9\n"
                            "load: {users: 3, duration: 10s}\n"
                            "data: {ids: {csv: ids.csv}}\n"
                            "flows: [{name: f, steps: [{get: '/{{ids.id}}', headers: "
                            "{X-Token: '{{env(\"STAMPEDE_DAEMON_TEST_TOKEN\")}}'}}]}]\n");
  prepare.set_scenario_file("shipped.yaml");
  (*prepare.mutable_env())["STAMPEDE_DAEMON_TEST_TOKEN"] = "from-the-master";
  (*prepare.mutable_files())["ids.csv"] = "id\n7\n8\n";
  prepare.set_duration_us(2'000'000);
  prepare.add_cluster_users(2); // worker 0
  prepare.add_cluster_users(1); // worker 1: the second of the cluster's 3 users
  prepare.set_iterations(5);
  auto run = worker::prepareRun(prepare, {1, 2, 3}, worker::TargetPolicy{});
  REQUIRE(run.scenario);
  CHECK(run.scenario->load.total() == std::chrono::seconds(2));
  REQUIRE(run.scenario->data.size() == 1);
  CHECK(run.scenario->data[0].rows == std::vector<std::vector<std::string>>{{"7"}, {"8"}});
  CHECK(run.options.worker_index == 1);
  CHECK(run.options.worker_count == 2);
  CHECK(run.options.threads == 3);
  REQUIRE(run.options.cluster_users);
  CHECK(*run.options.cluster_users == common::clusterUsersOf(1, std::vector<uint32_t>{2, 1}));
  CHECK(run.options.cluster_users->size() == 1);
  CHECK(run.options.iterations == 5u);
  CHECK(!run.options.allow_target);
  // The env() value is the master's: the rendered header carries it, not this host's.
  const auto& header = run.scenario->flows.at(0).steps.at(0).headers.at(0);
  CHECK(header.first == "X-Token");
  CHECK(header.second.render(common::RenderContext{}) == "from-the-master");
  ::unsetenv("STAMPEDE_DAEMON_TEST_TOKEN");

  // A file the Prepare does not ship is not read from this host's disk.
  prepare.mutable_files()->clear();
  CHECK_THROWS_WITH(worker::prepareRun(prepare, {1, 2, 3}, worker::TargetPolicy{}),
                    Catch::Contains("ids.csv"));
}

TEST_CASE("daemon: a master heartbeat is answered at once with the worker's stamps", "[daemon]") {
  zmq::context_t context;
  ManualClock clock;
  Daemon daemon(context, &clock);
  Master master(context, daemon.endpoint());
  master.handshake(7);
  // The worker's own cadence cannot send this: its clock does not move during the test.
  wire::Envelope beat;
  beat.mutable_heartbeat()->set_sent_ns(123'456'789);
  master.send(beat);
  const auto echo = master.expect(wire::Envelope::kHeartbeat);
  REQUIRE(echo);
  CHECK(echo->heartbeat().echo_master_ns() == 123'456'789);
  const int64_t worker_now = common::steadyNs(clock.now());
  CHECK(echo->heartbeat().echo_received_ns() == worker_now);
  CHECK(echo->heartbeat().sent_ns() == worker_now);
}
