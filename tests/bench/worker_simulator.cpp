// worker_simulator: many simulated worker daemons in one process, for the master-scale
// benchmark (issue 3, tests/bench/master_scale.sh). Each simulated worker binds a ROUTER on
// 127.0.0.1 and speaks the control plane exactly like worker/daemon.cpp does, but sends no
// HTTP: instead of running a load engine it sends realistic interval deltas.
//
//   Probe -> Hello (one per Probe: the master takes several clock samples)
//   Welcome (run id, index, offset, heartbeat timeout) -> Prepare -> Ready
//   Start -> Stats once a second (20 steps, a few hundred samples per step, RLE histograms
//            made by the real codec) and Heartbeat once a second
//   Stop or Halt -> Final (the partial last interval), re-sent every second until FinalAck
//   any other master -> Busy; master silent past its heartbeat timeout -> back to idle
//   sequence numbers per simulated worker from 1 (monotonic for the process's life, like the
//   daemon), run id from Welcome.
//
// Building a realistic histogram costs far more than the master's merge of it, so the simulator
// does not sample a fresh one per worker and second (that would steal the shared machine's CPU
// from the master being measured): at start it builds a pool of interval deltas with the real
// Histogram and statsToWire (lognormal latencies with a 1 % slow tail, a different median per
// step, per-step counts varying around --rate), and each Stats message is one pool entry picked
// at random. The Final carries a pool entry built for a partial interval of about the elapsed
// fraction. Every request in every message sent is counted; the summary (--summary FILE, JSON)
// has the totals that the master's report must match.
//
// usage: worker_simulator --workers N --hosts-file FILE [--base-port P] [--steps 20]
//            [--rate 300] [--pool 64] [--threads 1] [--runs 1] [--max-seconds 300]
//            [--summary FILE] [--seed S] [--io-threads 1]
//   --base-port P   bind 127.0.0.1:P .. P+N-1 (default 0: let the system pick free ports)
//   --runs R        exit once every simulated worker has finished R runs (FinalAck received)
// Exit codes: 0 done, 2 usage, 3 a port could not be bound, 4 --max-seconds reached first.
#include "common/histogram.h"
#include "common/protocol.h"
#include "common/stats.h"
#include "stampede.pb.h"

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
namespace wire = stampede::wire;
namespace common = stampede::common;

std::atomic<bool> g_stop{false};
extern "C" void onSignal(int) {
  g_stop = true;
}

struct Options {
  int workers = 0;
  int base_port = 0;
  std::string hosts_file;
  std::string summary_file;
  int steps = 20;
  int rate = 300; // samples per step per second per simulated worker, on average
  int pool = 64;
  int threads = 1;
  int io_threads = 1;
  int runs = 1;
  int max_seconds = 300;
  uint64_t seed = 12345;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "worker_simulator: %s\n"
      "usage: worker_simulator --workers N --hosts-file FILE [--base-port P] [--steps 20]\n"
      "         [--rate 300] [--pool 64] [--threads 1] [--io-threads 1] [--runs 1]\n"
      "         [--max-seconds 300] [--summary FILE] [--seed S]\n",
      why.c_str());
  std::exit(2);
}

Options parseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc)
      usage(arg + " needs a value");
    const std::string value = argv[++i];
    auto number = [&](int lo, int hi) {
      char* end = nullptr;
      long v = std::strtol(value.c_str(), &end, 10);
      if (!end || *end || v < lo || v > hi)
        usage(arg + ": expected " + std::to_string(lo) + ".." + std::to_string(hi) + ", got " +
              value);
      return int(v);
    };
    if (arg == "--workers")
      o.workers = number(1, 20000);
    else if (arg == "--base-port")
      o.base_port = number(0, 65535);
    else if (arg == "--hosts-file")
      o.hosts_file = value;
    else if (arg == "--summary")
      o.summary_file = value;
    else if (arg == "--steps")
      o.steps = number(1, 10000);
    else if (arg == "--rate")
      o.rate = number(1, 10'000'000);
    else if (arg == "--pool")
      o.pool = number(1, 100000);
    else if (arg == "--threads")
      o.threads = number(1, 64);
    else if (arg == "--io-threads")
      o.io_threads = number(1, 64);
    else if (arg == "--runs")
      o.runs = number(1, 1000000);
    else if (arg == "--max-seconds")
      o.max_seconds = number(1, 86400);
    else if (arg == "--seed")
      o.seed = uint64_t(number(0, 2147483647));
    else
      usage("unknown option " + arg);
  }
  if (o.workers == 0)
    usage("--workers is required");
  if (o.hosts_file.empty())
    usage("--hosts-file is required");
  if (o.base_port > 0 && o.base_port + o.workers - 1 > 65535)
    usage("--base-port + --workers exceeds 65535");
  return o;
}

int64_t steadyNs(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// One realistic interval delta, ready to send: the Stats body and its request count.
struct PoolEntry {
  wire::Stats stats;
  uint64_t requests = 0;
  uint64_t bytes = 0; // encoded size of the steps, for the summary
};

// Interval deltas of `fraction` seconds for a worker doing about `rate` requests per step per
// second: per step a lognormal latency with its own median (2..60 ms), sigma 0.6, 1 % of the
// samples 5-20x slower; a request count varying +-25 % around the mean.
PoolEntry makeEntry(std::mt19937_64& rng, int steps, int rate, double fraction) {
  common::StatsBook book{static_cast<size_t>(steps)};
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (int s = 0; s < steps; ++s) {
    const double median_us = 2000.0 * std::pow(30.0, double(s) / std::max(1, steps - 1));
    const double mean = double(rate) * fraction * (0.75 + 0.5 * uniform(rng));
    const auto n = uint64_t(std::llround(std::max(0.0, mean)));
    common::StepStats& step = book.steps[size_t(s)];
    const uint64_t response_bytes = 300 + uint64_t(s) * 250; // headers + a small body
    for (uint64_t i = 0; i < n; ++i) {
      double v = median_us * std::exp(0.6 * normal(rng));
      if (uniform(rng) < 0.01)
        v *= 5.0 + 15.0 * uniform(rng);
      step.latency_us.record(int64_t(v));
    }
    step.requests = n;
    step.bytes_in = n * response_bytes;
    step.bytes_out = n * 160;
  }
  PoolEntry entry;
  common::statsToWire(book, entry.stats);
  for (int s = 0; s < steps; ++s)
    entry.requests += book.steps[size_t(s)].requests;
  entry.bytes = entry.stats.ByteSizeLong();
  return entry;
}

struct Pools {
  std::vector<PoolEntry> full;    // one-second intervals
  std::vector<PoolEntry> partial; // partial[k]: an interval of (k + 1) / 10 s, for Final
};

struct Totals {
  uint64_t requests_sent = 0; // in Stats and Final messages that left the socket
  uint64_t stats_messages = 0;
  uint64_t final_messages = 0; // first sends only; re-sends are not counted twice
  uint64_t final_resends = 0;
  uint64_t heartbeats = 0;
  uint64_t hellos = 0;
  uint64_t stats_bytes = 0;
  uint64_t send_failures = 0;
  uint64_t busy_replies = 0;
  uint64_t dropped = 0;
  uint64_t runs_done = 0;
  uint64_t master_silent = 0;
  uint64_t halts = 0;
  uint64_t stops = 0;
  uint64_t stats_lag_max_us = 0; // how late a Stats left after it was due (simulator overload)

  void add(const Totals& o) {
    requests_sent += o.requests_sent;
    stats_messages += o.stats_messages;
    final_messages += o.final_messages;
    final_resends += o.final_resends;
    heartbeats += o.heartbeats;
    hellos += o.hellos;
    stats_bytes += o.stats_bytes;
    send_failures += o.send_failures;
    busy_replies += o.busy_replies;
    dropped += o.dropped;
    runs_done += o.runs_done;
    master_silent += o.master_silent;
    halts += o.halts;
    stops += o.stops;
    stats_lag_max_us = std::max(stats_lag_max_us, o.stats_lag_max_us);
  }
};

class SimWorker {
public:
  enum class State { Idle, Handshake, Prepared, Running, Finishing };

  SimWorker(zmq::context_t& context, const std::string& endpoint, const Pools& pools, uint64_t seed,
            Totals& totals)
      : socket_(context, zmq::socket_type::router), pools_(pools), rng_(seed), totals_(totals) {
    socket_.set(zmq::sockopt::maxmsgsize, common::kMaxMessageBytes);
    socket_.set(zmq::sockopt::linger, 0);
    socket_.set(zmq::sockopt::router_mandatory, 1);
    socket_.bind(endpoint);
    endpoint_ = socket_.get(zmq::sockopt::last_endpoint);
  }

  zmq::socket_t& socket() { return socket_; }
  const std::string& endpoint() const { return endpoint_; }
  uint64_t runsDone() const { return runs_done_; }
  uint64_t requestsSent() const { return requests_sent_; }

  void receiveAll() {
    for (;;) {
      std::vector<zmq::message_t> frames;
      auto got =
          zmq::recv_multipart(socket_, std::back_inserter(frames), zmq::recv_flags::dontwait);
      if (!got)
        return;
      if (frames.size() != 2) {
        ++totals_.dropped;
        continue;
      }
      auto envelope = common::decodeEnvelope(frames[1].data(), frames[1].size());
      if (!envelope) {
        ++totals_.dropped;
        continue;
      }
      handle(frames[0].to_string(), *envelope);
    }
  }

  void periodic(TimePoint now) {
    if (state_ == State::Idle)
      return;
    if (state_ == State::Running && now >= next_stats_) {
      totals_.stats_lag_max_us = std::max<uint64_t>(
          totals_.stats_lag_max_us,
          uint64_t(
              std::chrono::duration_cast<std::chrono::microseconds>(now - next_stats_).count()));
      sendStats(now);
      next_stats_ += 1s;
      if (next_stats_ < now)
        next_stats_ = now + 1s;
    }
    // The daemon's engine ends by itself at the end of the duration; the master's Stop
    // normally comes first. A generous fallback, in case the Stop is lost.
    if (state_ == State::Running && now >= self_end_)
      sendFinal(now, false);
    if (state_ == State::Finishing && now >= next_final_) {
      send(final_);
      ++totals_.final_resends;
      next_final_ = now + 1s;
    }
    if (now >= next_heartbeat_) {
      wire::Envelope beat;
      beat.mutable_heartbeat()->set_sent_ns(steadyNs(now));
      send(beat);
      ++totals_.heartbeats;
      next_heartbeat_ = now + 1s;
    }
    if (now - last_heard_ > master_timeout_) {
      ++totals_.master_silent;
      reset();
    }
  }

private:
  void handle(const std::string& peer, const wire::Envelope& envelope) {
    const auto now = Clock::now();
    if (!master_id_.empty() && peer != master_id_) {
      wire::Envelope busy;
      busy.mutable_busy()->set_reason("serving another master");
      sendTo(peer, busy);
      ++totals_.busy_replies;
      return;
    }
    if (state_ == State::Idle) {
      if (!envelope.has_probe()) {
        ++totals_.dropped;
        return;
      }
      master_id_ = peer;
      state_ = State::Handshake;
      last_seq_ = 0;
      run_id_ = 0;
      last_heard_ = now;
      next_heartbeat_ = now + 1s;
    }
    if (envelope.seq() <= last_seq_ ||
        (run_id_ != 0 && envelope.run_id() != run_id_ && !envelope.has_probe())) {
      ++totals_.dropped;
      return;
    }
    last_seq_ = envelope.seq();
    last_heard_ = now;

    switch (envelope.body_case()) {
    case wire::Envelope::kProbe: {
      if (state_ != State::Handshake) {
        ++totals_.dropped;
        break;
      }
      wire::Envelope hello;
      auto* h = hello.mutable_hello();
      h->set_protocol(common::kProtocolVersion);
      h->set_build(STAMPEDE_VERSION);
      h->set_cores(1);
      h->set_threads(1);
      h->set_master_ns(envelope.probe().master_ns());
      h->set_worker_ns(steadyNs(Clock::now()));
      send(hello);
      ++totals_.hellos;
      break;
    }
    case wire::Envelope::kWelcome:
      run_id_ = envelope.run_id();
      worker_index_ = envelope.welcome().worker_index();
      offset_ns_ = envelope.welcome().clock_offset_ns();
      if (envelope.welcome().heartbeat_timeout_ms() > 0)
        master_timeout_ = std::min<std::chrono::milliseconds>(
            3000ms, std::chrono::milliseconds(envelope.welcome().heartbeat_timeout_ms()));
      break;
    case wire::Envelope::kPrepare: {
      wire::Envelope reply;
      if (state_ != State::Handshake || run_id_ == 0) {
        ++totals_.dropped;
        break;
      }
      // This worker's users, as the master planned them: its entry in cluster_users.
      users_ = worker_index_ < uint32_t(envelope.prepare().cluster_users_size())
                   ? envelope.prepare().cluster_users(int(worker_index_))
                   : 0;
      duration_ = std::chrono::microseconds(envelope.prepare().duration_us());
      state_ = State::Prepared;
      reply.mutable_ready();
      send(reply);
      break;
    }
    case wire::Envelope::kStart: {
      if (state_ != State::Prepared) {
        ++totals_.dropped;
        break;
      }
      const auto start_local = TimePoint(std::chrono::duration_cast<Clock::duration>(
          std::chrono::nanoseconds(envelope.start().start_master_ns() + offset_ns_)));
      state_ = State::Running;
      interval_ = 0;
      last_stats_at_ = std::max(now, start_local);
      next_stats_ = now + 1s; // as the daemon: a second after it heard Start
      self_end_ = start_local + duration_ + 10s;
      break;
    }
    case wire::Envelope::kHalt:
      ++totals_.halts;
      if (state_ == State::Running)
        sendFinal(now, true);
      break;
    case wire::Envelope::kStop:
      ++totals_.stops;
      if (state_ == State::Running)
        sendFinal(now, false);
      else if (state_ == State::Handshake || state_ == State::Prepared)
        reset(); // released before the start
      break;
    case wire::Envelope::kFinalAck:
      if (state_ == State::Finishing) {
        ++runs_done_;
        ++totals_.runs_done;
      }
      reset();
      break;
    case wire::Envelope::kHeartbeat:
      break;
    default:
      ++totals_.dropped;
      break;
    }
  }

  const PoolEntry& pickFull() { return pools_.full[size_t(rng_() % pools_.full.size())]; }

  void sendStats(TimePoint now) {
    // Copying the entry keeps the pool untouched; the copy is what a real worker would build.
    const PoolEntry& entry = pickFull();
    wire::Envelope envelope;
    auto* s = envelope.mutable_stats();
    *s = entry.stats;
    s->set_interval(++interval_);
    s->set_at_master_ns(steadyNs(now) - offset_ns_);
    s->set_active_users(users_);
    if (send(envelope)) {
      totals_.requests_sent += entry.requests;
      requests_sent_ += entry.requests;
      ++totals_.stats_messages;
      totals_.stats_bytes += entry.bytes;
    }
    last_stats_at_ = now;
  }

  void sendFinal(TimePoint now, bool halted) {
    const double elapsed = std::chrono::duration<double>(now - last_stats_at_).count();
    const auto k = size_t(std::clamp(std::lround(elapsed * 10.0) - 1, 0L, 9L));
    const PoolEntry& entry = pools_.partial[k];
    final_ = wire::Envelope();
    auto* f = final_.mutable_final();
    auto* s = f->mutable_stats();
    *s = entry.stats;
    s->set_interval(++interval_);
    s->set_at_master_ns(steadyNs(now) - offset_ns_);
    s->set_active_users(0);
    f->set_halted(halted);
    f->set_stopped_master_ns(steadyNs(now) - offset_ns_);
    // Counted once, when first sent: a re-send carries the same delta and the master takes
    // only the first Final it sees.
    if (send(final_)) {
      totals_.requests_sent += entry.requests;
      requests_sent_ += entry.requests;
      ++totals_.final_messages;
      totals_.stats_bytes += entry.bytes;
    }
    state_ = State::Finishing;
    next_final_ = now + 1s;
  }

  bool send(wire::Envelope& envelope) { return sendTo(master_id_, envelope); }

  bool sendTo(const std::string& peer, wire::Envelope& envelope) {
    envelope.set_protocol(common::kProtocolVersion);
    const bool ours = peer == master_id_;
    envelope.set_run_id(ours ? run_id_ : 0);
    envelope.set_seq(ours ? ++send_seq_ : 0);
    const std::string payload = common::encodeEnvelope(envelope);
    try {
      socket_.send(zmq::buffer(peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait);
      auto sent = socket_.send(zmq::buffer(payload), zmq::send_flags::dontwait);
      if (!sent) {
        ++totals_.send_failures;
        return false;
      }
      return true;
    } catch (const zmq::error_t&) {
      ++totals_.send_failures;
      return false;
    }
  }

  void reset() {
    master_id_.clear();
    run_id_ = 0;
    interval_ = 0;
    master_timeout_ = 3000ms;
    state_ = State::Idle;
  }

  zmq::socket_t socket_;
  std::string endpoint_;
  const Pools& pools_;
  std::mt19937_64 rng_;
  Totals& totals_;

  State state_ = State::Idle;
  std::string master_id_;
  uint64_t run_id_ = 0;
  uint64_t send_seq_ = 0;
  uint64_t last_seq_ = 0;
  int64_t offset_ns_ = 0;
  uint32_t users_ = 0;
  uint32_t worker_index_ = 0; // from Welcome
  std::chrono::microseconds duration_{0};
  std::chrono::milliseconds master_timeout_{3000};
  TimePoint last_heard_{};
  TimePoint next_heartbeat_{};
  TimePoint next_stats_{};
  TimePoint next_final_{};
  TimePoint last_stats_at_{};
  TimePoint self_end_{};
  uint64_t interval_ = 0;
  wire::Envelope final_;
  uint64_t runs_done_ = 0;
  uint64_t requests_sent_ = 0;
};

// One thread serving a slice of the simulated workers: one zmq::poll over all their sockets.
void serve(std::vector<std::unique_ptr<SimWorker>>& workers, size_t from, size_t to, int runs,
           TimePoint deadline, std::atomic<bool>& timed_out) {
  std::vector<zmq::pollitem_t> items;
  for (size_t i = from; i < to; ++i)
    items.push_back({workers[i]->socket().handle(), 0, ZMQ_POLLIN, 0});
  auto next_periodic = Clock::now();
  while (!g_stop.load(std::memory_order_relaxed)) {
    try {
      zmq::poll(items.data(), items.size(), 5ms);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR)
        throw;
      continue;
    }
    for (size_t i = from; i < to; ++i)
      if (items[i - from].revents & ZMQ_POLLIN)
        workers[i]->receiveAll();
    const auto now = Clock::now();
    if (now >= next_periodic) {
      for (size_t i = from; i < to; ++i)
        workers[i]->periodic(now);
      next_periodic = now + 5ms;
    }
    bool all_done = true;
    for (size_t i = from; i < to && all_done; ++i)
      all_done = workers[i]->runsDone() >= uint64_t(runs);
    if (all_done)
      return;
    if (now >= deadline) {
      timed_out = true;
      return;
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  const Options options = parseArgs(argc, argv);
  std::signal(SIGINT, onSignal);
  std::signal(SIGTERM, onSignal);

  const auto t_begin = Clock::now();
  std::mt19937_64 rng(options.seed);
  Pools pools;
  for (int i = 0; i < options.pool; ++i)
    pools.full.push_back(makeEntry(rng, options.steps, options.rate, 1.0));
  for (int k = 0; k < 10; ++k)
    pools.partial.push_back(makeEntry(rng, options.steps, options.rate, double(k + 1) / 10.0));
  uint64_t pool_bytes = 0;
  uint64_t pool_requests = 0;
  for (const auto& e : pools.full) {
    pool_bytes += e.bytes;
    pool_requests += e.requests;
  }

  zmq::context_t context(options.io_threads);
  context.set(zmq::ctxopt::max_sockets, options.workers + 64);

  std::vector<Totals> totals(size_t(options.threads));
  std::vector<std::unique_ptr<SimWorker>> workers;
  workers.reserve(size_t(options.workers));
  const size_t per_thread =
      (size_t(options.workers) + size_t(options.threads) - 1) / size_t(options.threads);
  for (int i = 0; i < options.workers; ++i) {
    const std::string endpoint = options.base_port > 0
                                     ? "tcp://127.0.0.1:" + std::to_string(options.base_port + i)
                                     : std::string("tcp://127.0.0.1:*");
    try {
      workers.push_back(std::make_unique<SimWorker>(context, endpoint, pools,
                                                    options.seed * 1000003 + uint64_t(i),
                                                    totals[size_t(i) / per_thread]));
    } catch (const zmq::error_t& e) {
      std::fprintf(stderr, "worker_simulator: cannot bind %s: %s\n", endpoint.c_str(), e.what());
      workers.clear();
      return 3;
    }
  }

  // The hosts file is written last, under a temporary name: once it exists, every port listens.
  {
    const std::string tmp = options.hosts_file + ".tmp";
    std::ofstream hosts(tmp);
    hosts << "# " << options.workers << " simulated workers (tests/bench/worker_simulator)\n";
    for (const auto& w : workers) {
      const std::string& ep = w->endpoint(); // tcp://127.0.0.1:PORT
      hosts << ep.substr(ep.rfind('/') + 1) << "\n";
    }
    hosts.close();
    if (!hosts || std::rename(tmp.c_str(), options.hosts_file.c_str()) != 0) {
      std::fprintf(stderr, "worker_simulator: cannot write %s\n", options.hosts_file.c_str());
      return 3;
    }
  }
  std::fprintf(stderr,
               "worker_simulator: %d workers listening, %d steps, ~%.0f requests and ~%.1f KB "
               "of steps per Stats message\n",
               options.workers, options.steps, double(pool_requests) / double(pools.full.size()),
               double(pool_bytes) / double(pools.full.size()) / 1024.0);

  const auto deadline = Clock::now() + std::chrono::seconds(options.max_seconds);
  std::atomic<bool> timed_out{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < options.threads; ++t) {
    const size_t from = size_t(t) * per_thread;
    const size_t to = std::min(workers.size(), from + per_thread);
    if (from >= to)
      continue;
    threads.emplace_back(
        [&, from, to] { serve(workers, from, to, options.runs, deadline, timed_out); });
  }
  for (auto& t : threads)
    t.join();

  Totals sum;
  for (const auto& t : totals)
    sum.add(t);
  uint64_t workers_done = 0;
  for (const auto& w : workers)
    workers_done += w->runsDone() >= uint64_t(options.runs);
  const double wall_s = std::chrono::duration<double>(Clock::now() - t_begin).count();

  nlohmann::json summary = {
      {"workers", options.workers},
      {"workers_done", workers_done},
      {"steps", options.steps},
      {"rate_per_step", options.rate},
      {"requests_sent", sum.requests_sent},
      {"stats_messages", sum.stats_messages},
      {"final_messages", sum.final_messages},
      {"final_resends", sum.final_resends},
      {"heartbeats", sum.heartbeats},
      {"hellos", sum.hellos},
      {"stats_bytes", sum.stats_bytes},
      {"mean_stats_bytes",
       sum.stats_messages + sum.final_messages
           ? double(sum.stats_bytes) / double(sum.stats_messages + sum.final_messages)
           : 0.0},
      {"send_failures", sum.send_failures},
      {"busy_replies", sum.busy_replies},
      {"dropped", sum.dropped},
      {"runs_done", sum.runs_done},
      {"master_silent", sum.master_silent},
      {"halts", sum.halts},
      {"stops", sum.stops},
      {"stats_lag_max_ms", double(sum.stats_lag_max_us) / 1000.0},
      {"timed_out", timed_out.load()},
      {"interrupted", g_stop.load()},
      {"wall_s", wall_s},
  };
  const std::string text = summary.dump(1) + "\n";
  if (!options.summary_file.empty()) {
    std::ofstream out(options.summary_file);
    out << text;
  } else {
    std::cout << text;
  }
  workers.clear();
  return timed_out ? 4 : 0;
}
