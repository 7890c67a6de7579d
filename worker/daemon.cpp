#include "worker/daemon.h"

#include "common/config_error.h"
#include "common/protocol.h"
#include "common/scenario.h"
#include "stampede.pb.h"
#include "worker/control_socket.h"
#include "worker/engine.h"
#include "worker/prepare_run.h"
#include "worker/set_rate.h"
#include "worker/target_policy.h"

#include <fmt/format.h>

#include <optional>
#include <thread>

namespace stampede::worker {

using namespace std::chrono_literals;
using common::SteadyTime;

namespace {

std::unique_ptr<common::Clock> makeDaemonClock(std::chrono::milliseconds skew, int64_t drift_ppm) {
  if (skew.count() == 0 && drift_ppm == 0)
    return std::make_unique<common::SteadyClock>();
  return std::make_unique<common::SkewedClock>(skew, drift_ppm);
}

std::string peerName(const std::string& id) {
  std::string out;
  for (unsigned char c : id)
    out += (c >= 0x20 && c < 0x7f) ? std::string(1, char(c)) : fmt::format("\\x{:02x}", c);
  return out;
}

// How long the control thread waits for the master before it looks at its clocks again.
constexpr auto kPollInterval = 50ms;
// On SIGINT/SIGTERM during a run: how long in-flight requests may take to complete, and how
// long the Final may wait for the master's FinalAck (re-sent every kLeaveResend), polling
// every kLeavePoll. Real time, whatever the daemon's clock: these bound real waits.
constexpr auto kLeaveGrace = 1000ms;
constexpr auto kLeaveGraceCheck = 5ms; // how often the grace looks whether the engine ended
constexpr auto kLeaveAckWait = 1500ms;
constexpr auto kLeaveResend = 300ms;
constexpr auto kLeavePoll = 20ms;
// The longest master timeout a Welcome may set: a master that vanishes holds the worker no
// longer than this.
constexpr auto kMaxMasterTimeout = std::chrono::milliseconds(std::chrono::minutes(10));
// A worker halted by its own error waits this long at most for the master's Halt before it
// sends its Final: the Halt names the run's first error (maybe another worker's, earlier),
// from which the Final counts the sends.
constexpr auto kHaltWait = 1s;
// Until the master acks it, the Final goes again this often: a Final lost in a reconnect
// would lose the run's last second.
constexpr auto kFinalResend = 1s;
// Dialling and idle: a Hello this often, since the master's ROUTER cannot address us before
// it has heard from us.
constexpr auto kAnnounceInterval = 1s;

unsigned coreCount() {
  return std::max(1u, std::thread::hardware_concurrency());
}

} // namespace

// The control session's state machine: which master is served, the run it prepared, and
// what goes to it when. The socket is ControlSocket's; the Prepare's scenario is prepareRun's.
class WorkerDaemon::Session {
public:
  Session(zmq::context_t& context, DaemonOptions options, DaemonCounters& counters)
      : options_(std::move(options)), counters_(counters),
        clock_(options_.clock ? *options_.clock : *clock_storage_), socket_(context, options_),
        master_timeout_(options_.heartbeat_timeout) {}
  ~Session() { reset(); }

  void open();
  void run(const std::atomic<bool>& stop);

private:
  enum class State { Idle, Handshake, Prepared, Running, Finishing };

  void receiveAll();
  void handle(const std::string& peer, const wire::Envelope& envelope);
  void handleProbe(const wire::Probe& probe);
  void handleWelcome(const wire::Envelope& envelope);
  void handlePrepare(const wire::Prepare& prepare);
  void handleStart(const wire::Start& start);
  void handleHalt(const wire::Halt& halt);
  void handleHeartbeat(const wire::Heartbeat& beat);
  void periodic();
  void checkMasterSilence();
  void noteMasterHeard();
  void leave();
  void send(wire::Envelope& envelope);
  void sendTo(const std::string& peer, wire::Envelope& envelope);
  void sendStats();
  void sendFinal();
  void failStart(const std::string& why);
  void sendHello(int64_t master_ns);
  void reset();
  void log(const std::string& line) const {
    if (!options_.quiet)
      fmt::print(stderr, "worker: {}\n", line);
  }
  int64_t masterNs(SteadyTime local) const { return common::steadyNs(local) - offset_ns_; }

  DaemonOptions options_;
  DaemonCounters& counters_;
  // The steady clock itself unless a test skews it (DaemonOptions::test_clock_skew).
  std::unique_ptr<common::Clock> clock_storage_ =
      makeDaemonClock(options_.test_clock_skew, options_.test_clock_drift_ppm);
  const common::Clock& clock_; // options_.clock, or clock_storage_
  ControlSocket socket_;

  State state_ = State::Idle;
  std::string master_id_; // listening: the master served; empty when idle
  uint64_t run_id_ = 0;
  uint64_t send_seq_ = 0;
  common::SequenceFilter recv_filter_;
  int64_t offset_ns_ = 0;
  uint32_t worker_index_ = 0;
  uint32_t worker_count_ = 1;
  std::chrono::milliseconds master_timeout_;
  SteadyTime last_heard_{};
  SteadyTime next_heartbeat_{};
  SteadyTime next_stats_{};
  SteadyTime next_final_{};
  SteadyTime next_announce_{};
  uint64_t interval_ = 0;
  std::shared_ptr<common::Scenario> scenario_;
  std::unique_ptr<Engine> engine_;
  // This run's clock offset as the master re-measures it (its heartbeats carry it); the
  // engine's messaging stamps read it.
  std::shared_ptr<common::SharedClockModel> clock_model_;
  common::StatsBook delta_;
  std::optional<wire::Envelope> final_;
  bool leaving_ = false; // SIGINT/SIGTERM: the Final says that this worker leaves the run
  uint64_t tally_sent_ = 0;
  // last_heard_ + master_timeout_ on the steady clock (ns), renewed by every message from the
  // master. Virtual users send nothing past it: after a freeze they may wake before the control
  // thread has judged the master (EngineOptions::master_alive_until_ns).
  std::atomic<int64_t> master_alive_until_ns_{0};

  TargetPolicy target_policy_;
  // The master's Halt, once heard, and the first error's moment it named (on our clock): the
  // Final counts this worker's sends from there.
  bool halt_heard_ = false;
  // Start barrier (wire::Subscribe): the confirmed count last sent to the master, if started.
  std::optional<uint64_t> subscribed_sent_;
  std::optional<SteadyTime> first_error_at_;
  std::optional<SteadyTime> finished_at_; // when the engine was first seen finished
};

void WorkerDaemon::Session::open() {
  if (!options_.allow_target.empty())
    target_policy_ = TargetPolicy::parse(options_.allow_target);
  socket_.open();
}

void WorkerDaemon::Session::run(const std::atomic<bool>& stop) {
  log(socket_.listening() ? fmt::format("listening on {}", options_.listen)
                          : fmt::format("dialling master {}", options_.master));
  while (!stop.load(std::memory_order_relaxed)) {
    const ControlEvents events = socket_.wait(kPollInterval);
    if (events.interrupted) // a signal: look at `stop` and come back
      continue;
    if (events.monitor) {
      const MonitorNews news = socket_.takeMonitorNews();
      if (news.refused) {
        ++counters_.refused_handshakes;
        // Listening, the monitor names our own endpoint: the peer is one that connected to it.
        log(fmt::format("refused peer {}{}: {}", socket_.listening() ? "connecting to " : "",
                        news.refused->peer, news.refused->reason));
      }
      if (news.master_disconnected && state_ != State::Idle) {
        log("master disconnected: stopping the run, back to idle");
        reset();
      }
    }
    // Before reading: after a freeze (SIGSTOP, a stalled VM) the old master's queued
    // heartbeats must not make it look alive again.
    checkMasterSilence();
    if (events.messages)
      receiveAll();
    periodic();
  }
  leave();
  reset();
}

void WorkerDaemon::Session::noteMasterHeard() {
  last_heard_ = clock_.now();
  master_alive_until_ns_.store(common::steadyNs(last_heard_ + master_timeout_),
                               std::memory_order_relaxed);
}

void WorkerDaemon::Session::leave() {
  if (state_ == State::Prepared) {
    // The master is waiting for Ready from the others: tell it now rather than at its timeout.
    wire::Envelope refused;
    refused.mutable_refused()->set_reason("the worker is stopping (SIGINT or SIGTERM)");
    send(refused);
    return;
  }
  if (state_ != State::Running && state_ != State::Finishing)
    return;
  // Finishing: the run ended anyway and its Final is out; only the ack is awaited below.
  const bool mid_run = state_ == State::Running;
  if (mid_run) {
    leaving_ = true;
    log("stopping: ending the run's requests, then sending the last figures");
    // Requests in flight complete (briefly), so that the target's count and ours agree.
    engine_->finish();
    const auto grace_end = std::chrono::steady_clock::now() + kLeaveGrace;
    while (!engine_->finished() && std::chrono::steady_clock::now() < grace_end)
      std::this_thread::sleep_for(kLeaveGraceCheck);
    engine_->halt();
    engine_->join();
    state_ = State::Finishing;
    sendFinal();
  }
  // Bounded: a master that does not ack is not waited for longer.
  const auto give_up = std::chrono::steady_clock::now() + kLeaveAckWait;
  auto resend = std::chrono::steady_clock::now() + kLeaveResend;
  while (state_ == State::Finishing && final_ && std::chrono::steady_clock::now() < give_up) {
    // A second signal only ends one wait early: the loop keeps to its bound.
    if (socket_.wait(kLeavePoll, /*watch_monitor=*/false).messages)
      receiveAll();
    if (state_ == State::Finishing && final_ && std::chrono::steady_clock::now() >= resend) {
      send(*final_);
      resend = std::chrono::steady_clock::now() + kLeaveResend;
    }
  }
  if (state_ != State::Idle)
    log("stopping: the master did not acknowledge the last figures");
  else if (mid_run)
    log("left the run; the master has the last figures");
}

void WorkerDaemon::Session::receiveAll() {
  while (auto message = socket_.receive(counters_.dropped_messages))
    handle(message->peer, message->envelope);
}

void WorkerDaemon::Session::handle(const std::string& peer, const wire::Envelope& envelope) {
  if (socket_.listening() && !master_id_.empty() && peer != master_id_) {
    // Serving another master: say so, so that this one can tell its operator.
    wire::Envelope busy;
    busy.mutable_busy()->set_reason("serving another master");
    sendTo(peer, busy);
    ++counters_.busy_replies;
    return;
  }
  if (state_ == State::Idle) {
    if (!envelope.has_probe()) {
      ++counters_.dropped_messages;
      return;
    }
    master_id_ = peer;
    state_ = State::Handshake;
    recv_filter_.reset();
    // send_seq_ stays monotonic for the daemon's life: a master that heard our announcements
    // must not see the sequence go back.
    run_id_ = 0;
    noteMasterHeard();
    next_heartbeat_ = last_heard_ + common::kHeartbeatInterval;
    log(socket_.listening() ? fmt::format("serving master {}", peerName(peer)) : "serving master");
  }
  if (!recv_filter_.accept(envelope.seq()) ||
      (run_id_ != 0 && envelope.run_id() != run_id_ && !envelope.has_probe())) {
    ++counters_.dropped_messages;
    return;
  }
  noteMasterHeard();

  switch (envelope.body_case()) {
  case wire::Envelope::kProbe:
    handleProbe(envelope.probe());
    break;
  case wire::Envelope::kWelcome:
    handleWelcome(envelope);
    break;
  case wire::Envelope::kPrepare:
    handlePrepare(envelope.prepare());
    break;
  case wire::Envelope::kStart:
    handleStart(envelope.start());
    break;
  case wire::Envelope::kHalt:
    handleHalt(envelope.halt());
    break;
  case wire::Envelope::kStop:
    if (state_ == State::Running) {
      engine_->finish();
    } else if (state_ == State::Handshake || state_ == State::Prepared) {
      // The master is not starting a run after all (--dry-run, a refused peer): free us.
      log("released before the start");
      reset();
    }
    break;
  case wire::Envelope::kFinalAck:
    log(fmt::format("run {} done", run_id_));
    reset();
    break;
  case wire::Envelope::kHeartbeat:
    handleHeartbeat(envelope.heartbeat());
    break;
  case wire::Envelope::kSubscribe: // the start barrier: subscriptions first, load at Start
    if (state_ == State::Prepared && engine_ && !subscribed_sent_) {
      subscribed_sent_ = UINT64_MAX; // sent at the next periodic()
      engine_->subscribeFirst([this] { socket_.wake(); });
    }
    break;
  case wire::Envelope::kSetRate: // a capacity run's next probe
    if (engine_)
      applySetRate(*engine_, envelope.set_rate(), offset_ns_);
    break;
  case wire::Envelope::kReshare: // a worker joined beyond --expect-workers: a smaller share
    if (engine_ && state_ == State::Running) {
      const auto& r = envelope.reshare();
      engine_->reshare(r.rate_share(), r.max_in_flight(), r.worker_count(),
                       common::fromSteadyNs(r.from_ns() + offset_ns_),
                       {r.retire_users().begin(), r.retire_users().end()},
                       {r.keep_rows().begin(), r.keep_rows().end()});
    }
    break;
  default:
    ++counters_.dropped_messages;
    break;
  }
}

void WorkerDaemon::Session::handleWelcome(const wire::Envelope& envelope) {
  run_id_ = envelope.run_id();
  worker_index_ = envelope.welcome().worker_index();
  worker_count_ = std::max(1u, envelope.welcome().worker_count());
  offset_ns_ = envelope.welcome().clock_offset_ns();
  // One rule for both sides once welcomed: the master's timeout. The master declares us
  // lost after the same silence, so neither drops the other earlier than the other expects.
  if (envelope.welcome().heartbeat_timeout_ms() > 0) {
    master_timeout_ = std::min(
        kMaxMasterTimeout, std::chrono::milliseconds(envelope.welcome().heartbeat_timeout_ms()));
    noteMasterHeard();
  }
}

void WorkerDaemon::Session::handleStart(const wire::Start& start) {
  if (state_ != State::Prepared || !engine_) {
    ++counters_.dropped_messages;
    return;
  }
  const SteadyTime t0 = common::fromSteadyNs(start.start_master_ns() + offset_ns_);
  std::optional<SteadyTime> join_at;
  if (start.join_master_ns() > start.start_master_ns())
    join_at = common::fromSteadyNs(start.join_master_ns() + offset_ns_);
  try {
    engine_->start(t0, join_at);
  } catch (const std::exception& e) {
    failStart(e.what());
    return;
  }
  state_ = State::Running;
  // Deltas cut on whole intervals from t0: each Stats is one row of the master's timeseries.
  next_stats_ = t0 + common::kStatsInterval;
  // Rejoining a run in progress: the first cut is the next whole interval from t0.
  while (join_at && next_stats_ <= *join_at)
    next_stats_ += common::kStatsInterval;
  ++counters_.runs;
}

void WorkerDaemon::Session::handleHalt(const wire::Halt& halt) {
  if (halt.reason() == wire::HALT_REASON_LOST) {
    // The master wrote us off and will not wait for our Final: stop, and be free at once.
    log("the master declared this worker lost: stopping the run, back to idle");
    reset();
    return;
  }
  // Every other reason (an unknown one included) cancels what is in flight: only Stop lets
  // requests complete.
  if (!halt_heard_ && halt.first_error_master_ns() != 0)
    first_error_at_ = common::fromSteadyNs(halt.first_error_master_ns() + offset_ns_);
  halt_heard_ = true;
  if (engine_)
    engine_->halt();
}

// Answered at once, so that the master gets one clock sample per heartbeat (a round trip with
// no wait on our side); and the master's latest estimate of our offset, during a run.
void WorkerDaemon::Session::handleHeartbeat(const wire::Heartbeat& beat) {
  const int64_t received = common::steadyNs(clock_.now());
  if (beat.has_clock() && clock_model_) {
    const auto& c = beat.clock();
    common::ClockModel model;
    model.offset_ns = c.offset_ns();
    model.ref_master_ns = c.ref_master_ns();
    model.drift = c.drift();
    model.error_ns = c.error_ns();
    model.error_growth = c.error_growth();
    clock_model_->set(model);
  }
  if (beat.sent_ns() == 0 || run_id_ == 0)
    return;
  wire::Envelope echo;
  auto* e = echo.mutable_heartbeat();
  e->set_echo_master_ns(beat.sent_ns());
  e->set_echo_received_ns(received);
  const auto now = clock_.now();
  e->set_sent_ns(common::steadyNs(now));
  send(echo);
  next_heartbeat_ = now + common::kHeartbeatInterval;
}

void WorkerDaemon::Session::handleProbe(const wire::Probe& probe) {
  if (state_ != State::Handshake) {
    ++counters_.dropped_messages;
    return;
  }
  sendHello(probe.master_ns());
}

void WorkerDaemon::Session::sendHello(int64_t master_ns) {
  wire::Envelope hello;
  auto* h = hello.mutable_hello();
  h->set_protocol(common::kProtocolVersion);
  h->set_build(STAMPEDE_VERSION);
  h->set_cores(coreCount());
  h->set_threads(options_.threads > 0 ? options_.threads : coreCount());
  h->set_master_ns(master_ns);
  h->set_worker_ns(common::steadyNs(clock_.now()));
  send(hello);
}

void WorkerDaemon::Session::handlePrepare(const wire::Prepare& prepare) {
  if (state_ != State::Handshake || run_id_ == 0) {
    ++counters_.dropped_messages;
    return;
  }
  wire::Envelope reply;
  try {
    PreparedRun run = prepareRun(prepare, {worker_index_, worker_count_, options_.threads, run_id_},
                                 target_policy_);
    run.options.master_alive_until_ns = &master_alive_until_ns_;
    run.options.clock_offset_ns = offset_ns_;
    common::ClockModel handshake;
    handshake.offset_ns = offset_ns_;
    clock_model_ = std::make_shared<common::SharedClockModel>(handshake);
    run.options.clock_model = clock_model_;
    scenario_ = std::move(run.scenario);
    engine_ = std::make_unique<Engine>(scenario_, std::move(run.options), clock_);
    // The engine keeps the errors (the first one write-once) until periodic() takes them.
    engine_->setErrorListener([this](const common::ErrorContext&) { socket_.wake(); });
    // The control thread wakes at once when the run ends: the Final is the halt's ack.
    engine_->setFinishedListener([this] { socket_.wake(); });
    if (scenario_->halt.on_error == common::HaltSpec::OnError::Count)
      engine_->setErrorTick([this] { socket_.wake(); }, scenario_->halt.error_count);
    tally_sent_ = 0;
    delta_ = common::StatsBook(scenario_->step_table.size());
    state_ = State::Prepared;
    reply.mutable_ready();
  } catch (const TargetRefused& e) {
    ++counters_.refused_scenarios;
    log(std::string("refused a scenario: ") + e.what());
    reply.mutable_refused()->set_reason(e.what());
  } catch (const std::exception& e) { // common::ConfigError among them
    reply.mutable_refused()->set_reason(e.what());
  }
  if (reply.has_refused())
    reply.mutable_refused()->set_reason(common::toValidUtf8(reply.refused().reason()));
  send(reply);
  // A refused master will not start a run here: be ready for the next one.
  if (reply.has_refused())
    reset();
}

void WorkerDaemon::Session::periodic() {
  const auto now = clock_.now();
  if (state_ == State::Idle) {
    // A dialling worker speaks first: the master's ROUTER cannot address it before that.
    if (!socket_.listening() && now >= next_announce_) {
      sendHello(0);
      next_announce_ = now + kAnnounceInterval;
    }
    return;
  }
  if (engine_) {
    for (const auto& error : engine_->takeErrors()) {
      wire::Envelope report;
      common::errorToWire(error, offset_ns_, *report.mutable_error()->mutable_context());
      report.mutable_error()->set_data_exhausted(error.data_exhausted);
      send(report);
    }
  }
  if (engine_ && engine_->errorCount() != tally_sent_ &&
      scenario_->halt.on_error == common::HaltSpec::OnError::Count) {
    tally_sent_ = engine_->errorCount();
    wire::Envelope tally;
    tally.mutable_error_tally()->set_errors(tally_sent_);
    send(tally);
  }
  if (state_ == State::Prepared && subscribed_sent_ &&
      (*subscribed_sent_ != engine_->subscriptionsConfirmed() || now >= next_heartbeat_)) {
    wire::Envelope progress;
    subscribed_sent_ = engine_->subscriptionsConfirmed();
    progress.mutable_subscribed()->set_confirmed(*subscribed_sent_);
    progress.mutable_subscribed()->set_expected(engine_->subscriptionsExpected());
    send(progress);
  }
  if (state_ == State::Running && now >= next_stats_) {
    sendStats();
    // After a freeze, the next cut is the next whole interval from t0 again.
    while (next_stats_ <= now)
      next_stats_ += common::kStatsInterval;
  }
  if (state_ == State::Running && engine_->finished()) {
    if (!finished_at_)
      finished_at_ = now;
    if (!engine_->halted() || halt_heard_ || now - *finished_at_ >= kHaltWait) {
      engine_->join();
      state_ = State::Finishing;
      sendFinal();
    }
  }
  if (state_ == State::Finishing && now >= next_final_ && final_) {
    send(*final_);
    next_final_ = now + kFinalResend;
  }
  if (now >= next_heartbeat_) {
    wire::Envelope beat;
    beat.mutable_heartbeat()->set_sent_ns(common::steadyNs(now));
    send(beat);
    next_heartbeat_ = now + common::kHeartbeatInterval;
  }
  checkMasterSilence();
}

void WorkerDaemon::Session::checkMasterSilence() {
  if (state_ == State::Idle)
    return;
  const auto now = clock_.now();
  if (now - last_heard_ <= master_timeout_)
    return;
  log(fmt::format(
      "master silent for {} ms: stopping the run, back to idle",
      std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_).count()));
  reset();
}

void WorkerDaemon::Session::sendStats() {
  delta_.reset();
  engine_->collect(delta_);
  wire::Envelope stats;
  auto* s = stats.mutable_stats();
  s->set_interval(++interval_);
  s->set_at_master_ns(masterNs(clock_.now()));
  s->set_active_users(engine_->activeUsers());
  s->set_load_busy(engine_->loadBusy());
  if (scenario_->capacity)
    engine_->rearmFirstError(); // each probe keeps its first error in full
  common::statsToWire(delta_, *s);
  engine_->takeQueueLedger(*s);
  for (const uint64_t position : engine_->feederPositions())
    s->add_feeder_positions(position);
  send(stats);
}

// The engine could not start (out of memory making the users, no thread to be had): the
// master hears it as this worker's error, in full, and gets a Final at once, so that the run
// halts with the reason instead of the worker dying or going silent. Users wait for their
// ramp slot after the start barrier, so nothing was sent.
void WorkerDaemon::Session::failStart(const std::string& why) {
  log("could not start the run: " + why);
  common::ErrorContext context;
  context.worker_index = worker_index_;
  context.error_kind = "internal";
  context.detail = "the worker could not start the run: " + why;
  context.at = clock_.now();
  context.wall_at = std::chrono::system_clock::now();
  wire::Envelope report;
  common::errorToWire(context, offset_ns_, *report.mutable_error()->mutable_context());
  send(report);
  engine_->halt();
  engine_->join();
  ++counters_.runs;
  state_ = State::Finishing;
  sendFinal();
}

void WorkerDaemon::Session::sendFinal() {
  delta_.reset();
  engine_->collect(delta_);
  wire::Envelope final;
  auto* f = final.mutable_final();
  auto* s = f->mutable_stats();
  s->set_interval(++interval_);
  s->set_at_master_ns(masterNs(clock_.now()));
  s->set_active_users(0);
  common::statsToWire(delta_, *s);
  engine_->takeQueueLedger(*s);
  f->set_halted(engine_->halted());
  if (first_error_at_) {
    const auto count = engine_->sendsFrom(*first_error_at_);
    auto* sent = f->mutable_sent_after_first_error();
    sent->set_requests(count.sent);
    if (count.last_ns)
      sent->set_last_send_master_ns(*count.last_ns - offset_ns_);
    sent->set_complete(count.complete);
  }
  f->set_stopped_master_ns(masterNs(clock_.now()));
  f->set_leaving(leaving_);
  // The re-send cadence counts from the send, not from whenever this returns.
  next_final_ = clock_.now() + kFinalResend;
  send(final);
  final_ = final;
}

void WorkerDaemon::Session::send(wire::Envelope& envelope) {
  sendTo(master_id_, envelope);
}

void WorkerDaemon::Session::sendTo(const std::string& peer, wire::Envelope& envelope) {
  envelope.set_protocol(common::kProtocolVersion);
  // Another master (Busy) has nothing to do with our run: no run id, no sequence.
  const bool ours = peer == master_id_;
  envelope.set_run_id(ours ? run_id_ : 0);
  if (ours)
    envelope.set_seq(++send_seq_);
  socket_.send(peer, envelope);
}

void WorkerDaemon::Session::reset() {
  if (engine_) {
    engine_->halt();
    engine_->join();
    engine_.reset();
  }
  scenario_.reset();
  clock_model_.reset();
  final_.reset();
  halt_heard_ = false;
  subscribed_sent_.reset();
  first_error_at_.reset();
  finished_at_.reset();
  leaving_ = false;
  master_id_.clear();
  run_id_ = 0;
  interval_ = 0;
  master_timeout_ = options_.heartbeat_timeout; // the last master's Welcome may have changed it
  state_ = State::Idle;
}

WorkerDaemon::WorkerDaemon(zmq::context_t& context, DaemonOptions options)
    : session_(std::make_unique<Session>(context, std::move(options), counters_)) {}

WorkerDaemon::~WorkerDaemon() = default;

void WorkerDaemon::open() {
  session_->open();
}

void WorkerDaemon::run(const std::atomic<bool>& stop) {
  session_->run(stop);
}

} // namespace stampede::worker
