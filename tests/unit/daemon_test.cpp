// The worker daemon's control state machine, driven from the test over inproc:// by a DEALER
// that plays the master: Start before Prepare, Busy for a second master, Final re-sent until
// acked, and a refused Prepare. The scenario aims at a closed loopback port and ignores its
// errors: no HTTP target is needed.
#include "common/protocol.h"
#include "common/scenario.h"
#include "worker/daemon.h"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
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

// A daemon listening on its own inproc endpoint, served on a thread until destroyed.
class Daemon {
public:
  explicit Daemon(zmq::context_t& context)
      : endpoint_("inproc://daemon-test-" + std::to_string(next_++)),
        daemon_(context, options(endpoint_)) {
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
  static worker::DaemonOptions options(const std::string& endpoint) {
    worker::DaemonOptions o;
    o.listen = endpoint;
    o.threads = 1;
    o.quiet = true;
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
  void start() {
    wire::Envelope e;
    e.mutable_start()->set_start_master_ns(nowNs());
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

TEST_CASE("daemon: the Final is re-sent until acked, then the daemon is idle", "[daemon]") {
  zmq::context_t context;
  Daemon daemon(context);
  Master master(context, daemon.endpoint());
  master.handshake(7);
  master.prepare(kScenario);
  REQUIRE(master.expect(wire::Envelope::kReady));
  master.start();
  // A 200 ms run: the Final comes soon after, then again about a second later.
  auto final = master.expect(wire::Envelope::kFinal, 2000ms);
  REQUIRE(final);
  CHECK(daemon.counters().runs == 1);
  const auto first_at = Clock::now();
  auto again = master.expect(wire::Envelope::kFinal, 2500ms);
  REQUIRE(again);
  const auto gap = Clock::now() - first_at;
  CHECK(gap >= 800ms);
  CHECK(gap <= 2000ms); // loose: a loaded machine may be late
  CHECK(again->seq() > final->seq());
  CHECK(again->final().stats().interval() == final->final().stats().interval());

  master.send([] {
    wire::Envelope e;
    e.mutable_final_ack();
    return e;
  }());
  // No Final past the ack (the daemon's cadence is 1 s), and a new master's Probe gets Hello.
  CHECK_FALSE(master.expect(wire::Envelope::kFinal, 1200ms));
  Master next(context, daemon.endpoint());
  next.probe();
  CHECK(next.expect(wire::Envelope::kHello));
  CHECK(daemon.counters().busy_replies == 0);
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
