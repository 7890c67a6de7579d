// One load thread of the engine: its own io_context, HTTP client, stats book and virtual
// users, as in wrk; nothing of it is shared while it sends, except its stats, which the
// control thread collects once a second (common::StatsHandOff). In the open model it also runs
// the arrivals: iterations started on the schedule t_k, on idle virtual users of its pool.
// Every member is used on this thread only, except where said.
#pragma once

#include "worker/engine.h"
#include "worker/engine_timer.h"

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace stampede::worker {

struct VirtualUser;
struct BeastTlsConfig; // worker/beast_connection.h

inline int64_t toNs(common::SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// An exception's text, for an error report.
std::string describeException(std::exception_ptr error);

class WorkerThread {
public:
  WorkerThread(Engine& engine, int index);
  ~WorkerThread();
  // Closed model, before run(): the user numbered `vu` ({{vu}}) of load group `group`, wanted
  // while the group's curve is above vu minus the group's first {{vu}}.
  void addUser(uint64_t vu, size_t group);
  // The thread's body: spawns the users (or the arrivals) and runs the io_context to its end.
  // After Engine::subscribeFirst, it spawns only the subscriptions, and waits for spawnLoad.
  void run();
  // Spawns the closed users and the open groups' arrivals (posted by Engine::start).
  void spawnLoad();
  // Posted by the control thread: wakes every timer; with `cancel_requests`, aborts the
  // requests in flight too.
  void cancelAll(bool cancel_requests);

  // Open model: starts iterations of load group `group` on this thread's arrivals (k = index,
  // index + threads...).
  asio::awaitable<void> arrivals(size_t group);
  // Capacity runs: the same, at each probe's rate (Engine::setRate; capacity_arrivals.cpp).
  asio::awaitable<void> probeArrivals();
  // The group's arrivals (either of the above), then its pool's end (endPool).
  asio::awaitable<void> runArrivals(size_t group);
  // Starts one arrival due at `at` on an idle user of the pool, or counts it dropped when the
  // thread's share of max_in_flight is in use; false when the iteration budget is spent.
  bool launchArrival(common::SteadyTime at, uint64_t& next_vu); // capacity runs: group 0

  // A re-planned share (Engine::reshare), posted to this thread: open model, the arrivals from
  // `from` on; closed model, the users to retire after their current iteration.
  struct Schedule {
    std::shared_ptr<const common::LoadCurve> curve; // nullptr: closed model, no schedule
    double phase = 0;
    common::SteadyTime from{};
    uint64_t in_flight_cap = 0;
  };
  void reshare(Schedule schedule, const std::vector<uint64_t>& retire);

  struct Sample {
    int64_t latency_us;
    int64_t service_us = -1; // open model only
    int64_t lag_us = -1;     // open model: the first request of an arrival
  };
  // Once per request: inline, one uncontended lock.
  void record(size_t stats_index, const HttpResponse& response, const Sample& sample,
              const std::string* error_kind) {
    stats_.update([&](common::StatsBook& book) {
      auto& s = book.steps[stats_index];
      ++s.requests;
      s.bytes_in += response.bytes_in;
      s.bytes_out += response.bytes_out;
      if (response.http_version == 20)
        ++s.http2_responses;
      s.latency_us.record(sample.latency_us);
      if (sample.service_us >= 0)
        s.service_us.record(sample.service_us);
      if (sample.lag_us >= 0)
        s.schedule_lag_us.record(sample.lag_us);
      if (error_kind) {
        ++s.errors;
        ++s.errors_by_kind[*error_kind];
      }
    });
  }
  // Messaging: one message's end-to-end latency from its send, by whether its producer ran on
  // this worker (StepStats::same_worker_us, exact) or on another (cross_worker_us).
  void recordEndToEnd(size_t stats_index, bool same_worker, int64_t e2e_us) {
    stats_.update([&](common::StatsBook& book) {
      auto& s = book.steps[stats_index];
      (same_worker ? s.same_worker_us : s.cross_worker_us).record(e2e_us);
    });
  }
  void recordCancelled(size_t stats_index);
  void recordDropped(size_t stats_index);
  // A named count of a step (StepStats::counters): messaging's redelivered, stale, reconnects.
  void recordCount(size_t stats_index, const char* name, uint64_t n = 1);
  // The control thread: adds this thread's counters into `into` and clears them.
  void collect(common::StatsBook& into) { stats_.collect(into); }
  // The completion of a coroutine this thread spawned: what escaped it, if anything, is an
  // error (the coroutine is gone; nothing it held is left waiting).
  void onEscape(std::exception_ptr error);

  Engine& engine_;
  int index_;
  asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::unique_ptr<HttpClient> client_;
  std::shared_ptr<BeastTlsConfig> messaging_tls_; // messaging.tls, for ssl:// brokers
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<VirtualUser>> users_;
  // Open model, group 0 (a run with per-flow loads admits no newcomer, so is never re-planned).
  std::optional<Schedule> schedule_;      // the share in force after a re-plan
  std::optional<Schedule> next_schedule_; // posted, not yet due
  // Open model, one per load group (by Engine::Group::index; unused by closed groups): the
  // idle users of the group's pool, its share of max_in_flight and the arrivals' timer.
  struct ArrivalPool {
    explicit ArrivalPool(asio::io_context& io) : timer(io) {}
    std::vector<VirtualUser*> idle;
    uint64_t cap = 0;
    uint64_t in_flight = 0;
    EngineTimer timer;
    bool ended = false; // no arrival comes any more: a user back from its last one closes
  };
  // No arrival comes to `pool` any more: its idle users' messaging sessions close (a STOMP
  // session's heart-beat timer would otherwise keep the load thread's io_context running).
  void endPool(ArrivalPool& pool);
  std::vector<std::unique_ptr<ArrivalPool>> pools_;
  // Start barrier: keeps run() going between the subscriptions and spawnLoad (or a halt).
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> hold_;
  common::StatsHandOff stats_; // this thread writes per request, the control thread collects
  SendLog sends_; // every send's stamp, for the count after the first error (Engine::sendsFrom)
  std::thread thread_;
};

} // namespace stampede::worker
