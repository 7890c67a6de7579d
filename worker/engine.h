// The load engine of one worker: N load threads, each with its own io_context, HTTP client and
// stats book, running this worker's share of the load as coroutines. Closed model: virtual
// users loop their flows while the load curve wants them. Open model: each thread starts
// iterations on the arrival schedule t_k, on idle virtual users of its pool, up to its share
// of max_in_flight; an arrival beyond it is counted as dropped.
// start/halt/finish/collect are called from the control thread (any one thread); the load
// threads never wait on it, and the control thread never waits on a load thread's timer.
#pragma once

#include "common/clock.h"
#include "common/clock_tracker.h"
#include "common/error_context.h"
#include "common/load_plan.h"
#include "common/queue_consumers.h"
#include "common/scenario.h"
#include "common/stats.h"
#include "worker/http_client.h"
#include "worker/queue_ledger.h"
#include "worker/send_log.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace stampede::worker {

// This worker's part of one load group (common::LoadGroup) other than the first; the first
// group's is in EngineOptions' own fields of the same names.
struct GroupShare {
  std::optional<std::vector<uint64_t>> cluster_users; // closed model; nullopt: all of them
  double rate_share = 1.0;                            // open model
  std::optional<uint64_t> max_in_flight;              // open model; nullopt: the group's
  std::optional<uint64_t> first_vu;                   // open model; nullopt: the group's
  std::optional<uint64_t> iterations;                 // nullopt: the group's (0: none)
};

struct EngineOptions {
  int threads = 0; // 0: one per core
  uint32_t worker_index = 0;
  uint32_t worker_count = 1;
  // Closed model: the cluster numbers of this worker's users (see clusterUsersOf); a user
  // numbered c runs while the load curve is above c, and {{vu}} is c. Empty: every user of
  // the scenario (an embedded worker).
  std::optional<std::vector<uint64_t>> cluster_users;
  // Open model: this worker's fraction of the cluster's rate; its arrivals are offset by
  // worker_index / worker_count of its spacing, so that the cluster's sum is smooth.
  double rate_share = 1.0;
  std::optional<uint64_t> max_in_flight; // this worker's cap; nullopt: the scenario's
  uint64_t first_vu = 0;                 // open model: {{vu}} numbering starts here
  std::optional<uint64_t> iterations;    // this worker's cap; nullopt: the scenario's (0: none)
  // By feeder: where its cursor starts (Prepare.feeder_start); empty: at 0.
  std::vector<uint64_t> feeder_start;
  // Shuffle feeders draw their order from this: one per run and worker place, so that a worker
  // taking a place in a run in progress repeats the place's order and, from feeder_start, uses
  // no row twice. 0: an order of its own (a random seed).
  uint64_t shuffle_seed = 0;
  // Scenario::groups[1...]: this worker's share of each (per-flow load:); missing ones run
  // whole (an embedded worker). The fields above are groups[0]'s.
  std::vector<GroupShare> other_groups;
  // Cluster: no request is sent after this steady-clock time (ns), which the control thread
  // renews whenever its master speaks; a virtual user that finds it passed (a freeze, a silent
  // master) halts the engine instead of sending. nullptr: no such gate (tests, benches).
  const std::atomic<int64_t>* master_alive_until_ns = nullptr;
  // worker --allow-target with its names resolved: every connection of every load thread is
  // checked against it. nullptr: anywhere.
  std::shared_ptr<const TargetPolicy> allow_target;
  // This worker's steady clock minus the master's (the handshake's estimate): messaging
  // stamps are on the master's clock, so that end-to-end latency holds across workers.
  int64_t clock_offset_ns = 0;
  // The offset as the master re-measures it during the run (the control thread updates it);
  // nullptr: clock_offset_ns for the whole run.
  std::shared_ptr<const common::SharedClockModel> clock_model;
  // Builds each load thread's HTTP client, on that thread's construction; empty: the one
  // http.engine names. A seam for tests.
  std::function<std::unique_ptr<HttpClient>(asio::io_context&, const common::HttpSpec&)>
      client_factory;
};

using common::ErrorContext;

class WorkerThread;
class Feeders;
class JsonExpectations;

class Engine {
public:
  // Every stamp and every timer of the engine reads `clock`: a test may pass a clock of its
  // own and advance it (the HTTP clients' timeouts stay on the steady clock).
  Engine(std::shared_ptr<const common::Scenario> scenario, EngineOptions options,
         const common::Clock& clock);
  ~Engine(); // halts and joins
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Called on a load thread each time an error is handed over (see takeErrors): the first
  // error of a request, and each data feeder that ran out with on_exhausted: halt
  // (ErrorContext::data_exhausted), which halts the run whatever the policy. Must be cheap and
  // thread-safe. Set before start().
  void setErrorListener(std::function<void(const ErrorContext&)> listener);
  // Any thread (the control thread): the errors handed over and not taken yet, the first
  // error of the run first. The first is write-once: no later error replaces it.
  std::vector<ErrorContext> takeErrors() { return errors_handed_over_.take(); }

  // Called on a load thread after each error while errorCount() <= limit (the halt policy
  // counts errors cluster-wide). Must be cheap and thread-safe. Set before start().
  void setErrorTick(std::function<void()> tick, uint64_t limit);
  uint64_t errorCount() const { return errors_.load(std::memory_order_relaxed); }

  // Called on the last load thread to end, as it ends. Must be cheap and thread-safe.
  void setFinishedListener(std::function<void()> listener);

  // Starts the threads; the load curve (LoadSpec::stages) begins at t0 and ends at endTime().
  // A worker rejoining a run in progress passes the run's t0 and when it joins: open-model
  // arrivals due before `join_at` are skipped, closed users due before it start at once.
  void start(common::SteadyTime t0, std::optional<common::SteadyTime> join_at = std::nullopt);
  // The messaging start barrier, before start(): starts the load threads with only the
  // subscriptions of the users that subscribe for life (common::lifeFlow), no load yet;
  // `progress` is called on a load thread after each one the broker confirmed (it must be
  // cheap and thread-safe). A subscription that fails is this worker's first error.
  void subscribeFirst(std::function<void()> progress);
  uint64_t subscriptionsExpected() const { return subscriptions_expected_; }
  uint64_t subscriptionsConfirmed() const {
    return subscriptions_confirmed_.load(std::memory_order_acquire);
  }

  // Stops starting requests at once and cancels those in flight (counted as cancelled).
  void halt() noexcept;
  // End of run: stops starting requests; those in flight complete (bounded by http.timeout).
  void finish() noexcept;
  // Waits until every load thread has ended.
  void join();

  bool halted() const { return halted_.load(std::memory_order_acquire); }
  bool finished() const { return running_threads_.load(std::memory_order_acquire) == 0; }
  int activeUsers() const { return active_users_.load(std::memory_order_relaxed); }
  int threadCount() const { return static_cast<int>(threads_.size()); }
  common::SteadyTime endTime() const { return end_; }
  // Requests (redirect hops included) whose send stamp is at or after `from`, over every
  // load thread, and the latest send. Only after join(): it reads the threads' send logs.
  SendLog::Count sendsFrom(common::SteadyTime from) const;
  std::optional<ErrorContext> firstError() const { return errors_handed_over_.first(); }

  // Adds every thread's counters since the last call into `into` and clears them. One caller
  // at a time; the load threads wait for it only as long as a pointer swap (StatsHandOff).
  void collect(common::StatsBook& into);

  // Capacity runs (Scenario::capacity) only: from `from` to `to` this worker starts arrivals
  // at `rate` per second (one probe of the search); outside every probe it starts none. The
  // load threads take it up at once, keeping their connections and idle users. Any thread.
  void setRate(double rate, common::SteadyTime from, common::SteadyTime to);
  // A re-planned share (master --max-workers: a worker joined beyond --expect-workers), from
  // `from` on: open model, arrivals at `rate_share` of the cluster's rate with the phase
  // worker_index / `worker_count` and `max_in_flight` in flight; closed model, the users
  // numbered in `retire` end after their current iteration. Control thread, while running.
  // `keep_rows`, by feeder: the rows of a per_worker feeder it keeps (the rest go to the
  // newcomer), at once; empty: all.
  void reshare(double rate_share, uint64_t max_in_flight, uint32_t worker_count,
               common::SteadyTime from, const std::vector<uint64_t>& retire,
               const std::vector<uint64_t>& keep_rows = {});
  // By feeder: its cursor's position (Feeders::positions), for the Stats. Any thread.
  std::vector<uint64_t> feederPositions() const;
  // The load threads' CPU time since the last call (or the start) over the wall time, averaged
  // over the threads: 0 to 1, near 1 when they cannot go faster. Control thread, while running.
  double loadBusy();
  // Capacity runs: the next failing request builds a full context again, so that each probe
  // has its first error in full. Control thread, right after takeErrors().
  void rearmFirstError();

  // Messaging on queues: this worker's confirmed and consumed sequence numbers since the last
  // call, into `out`. The control thread.
  void takeQueueLedger(wire::Stats& out) { queue_ledger_.takeInto(out); }

  const common::Scenario& scenario() const { return *scenario_; }
  const common::Clock& clock() const { return clock_; }

private:
  // A stamp of this worker's clock on the master's, with the offset of the moment.
  int64_t toMasterNs(common::SteadyTime t) const;
  friend class WorkerThread;
  friend struct VirtualUser;
  // One relaxed load per request: see EngineOptions::master_alive_until_ns.
  bool masterSilentAt(common::SteadyTime t) const {
    return options_.master_alive_until_ns &&
           std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count() >
               options_.master_alive_until_ns->load(std::memory_order_relaxed);
  }
  bool stopping() const {
    return halted_.load(std::memory_order_acquire) || finishing_.load(std::memory_order_acquire);
  }
  // Hands `context` over (the first one is kept for good) and halts locally when it must.
  void reportError(ErrorContext context);
  void noteError();
  // Takes one iteration from the cap; false when the cap is reached.
  // One load group as this worker runs it (Scenario::groups): its curve, its share, its
  // iteration budget. Built by the constructor, read-only after it but for the budget.
  struct Group {
    size_t index = 0;
    const common::LoadGroup* spec = nullptr;
    bool open = false;
    std::unique_ptr<common::LoadCurve> curve; // open model: levels scaled by rate_share
    std::vector<uint64_t> cluster_users;      // closed: this worker's, numbered in the group
    double rate_share = 1.0;
    uint64_t max_in_flight = 0;
    uint64_t first_vu = 0; // open model: this worker's {{vu}} block starts here
    uint64_t iterations = 0;
    std::atomic<int64_t> iterations_left{0};
    double weight_total = 0;
  };
  bool takeIteration(Group& group);
  // Deals every closed group's users over the threads, once (start or subscribeFirst).
  void addUsers();
  void noteSubscribed() {
    subscriptions_confirmed_.fetch_add(1, std::memory_order_acq_rel);
    if (subscribed_listener_)
      subscribed_listener_();
  }
  // Signed: negative before the start.
  std::chrono::microseconds sinceStart() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - t0_);
  }
  const common::Flow& pickFlow(const Group& group, std::mt19937_64& rng) const;

  std::shared_ptr<const common::Scenario> scenario_;
  EngineOptions options_;
  const common::Clock& clock_;
  // The clock the load threads' timers read (worker/engine_timer.h); nullptr: the steady
  // clock itself, without a virtual call.
  const common::Clock* timer_clock_ = nullptr;
  common::SteadyTime t0_{};
  common::SteadyTime join_at_{}; // t0_, or later for a worker that rejoined the run
  common::SteadyTime end_{};
  std::vector<std::unique_ptr<WorkerThread>> threads_;
  std::function<void(const ErrorContext&)> error_listener_;
  std::function<void()> error_tick_;
  std::function<void()> finished_listener_;
  uint64_t error_tick_limit_ = 0;
  std::atomic<uint64_t> errors_{0};

  // Per request step: the http.headers entries that the step does not override (by name,
  // case-insensitively), so that no header goes out twice.
  std::unordered_map<const common::Step*, std::vector<size_t>> inherited_headers_;

  std::unique_ptr<Feeders> feeders_;                          // the data feeders' cursors
  std::unique_ptr<const JsonExpectations> json_expectations_; // expect.json values, parsed
  std::vector<common::LoadGroup> group_specs_;                // common::loadGroupsOf(scenario)
  std::vector<std::unique_ptr<Group>> groups_;                // one per group_specs_ entry
  bool users_added_ = false;
  // subscribeFirst() started the threads: start() posts the load to them.
  bool subscribing_first_ = false;
  uint64_t subscriptions_expected_ = 0;
  std::atomic<uint64_t> subscriptions_confirmed_{0};
  std::function<void()> subscribed_listener_;
  std::atomic<bool> data_stopped_{false}; // a feeder with on_exhausted: stop ran out

  // Capacity runs: the probes' rates in order (setRate), read by the load threads when the
  // count changes (worker/capacity_arrivals.cpp).
  struct RateSegment {
    common::SteadyTime from, to;
    double rate = 0;
  };
  bool stepped_ = false;
  // loadBusy()'s previous reading: the threads' CPU time and when.
  std::chrono::nanoseconds busy_cpu_{0};
  std::optional<std::chrono::steady_clock::time_point> busy_at_;
  std::mutex rate_mutex_;
  std::vector<RateSegment> rate_segments_;
  std::atomic<size_t> rate_segment_count_{0};

  std::atomic<bool> halted_{false};
  std::atomic<bool> finishing_{false};
  std::atomic<int> running_threads_{0};
  std::atomic<int> active_users_{0};
  // Taken by the first failing request: only that one builds a full context (later errors of
  // requests are counted in the stats, not described).
  std::atomic<bool> first_error_taken_{false};
  common::ErrorHandOver errors_handed_over_;
  // Messaging on queues: the queues this scenario consumes from (and their first subscribe
  // step), and what was confirmed and consumed on them.
  std::map<std::string, size_t> consumed_queues_ = common::queueConsumers(*scenario_);
  QueueLedger queue_ledger_;
};

} // namespace stampede::worker
