// The load engine of one worker: N load threads, each with its own io_context, HTTP client and
// stats book, running this worker's share of the load as coroutines. Closed model: virtual
// users loop their flows while the load curve wants them. Open model: each thread starts
// iterations on the arrival schedule t_k, on idle virtual users of its pool, up to its share
// of max_in_flight; an arrival beyond it is counted as dropped.
// start/halt/finish/collect are called from the control thread (any one thread); the load
// threads never wait on it, and the control thread never waits on a load thread's timer.
#pragma once

#include "common/clock.h"
#include "common/error_context.h"
#include "common/load_plan.h"
#include "common/scenario.h"
#include "common/stats.h"
#include "worker/http_client.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace stampede::worker {

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
  // Builds each load thread's HTTP client, on that thread's construction; empty: the one
  // http.engine names. A seam for tests.
  std::function<std::unique_ptr<HttpClient>(asio::io_context&, const common::HttpSpec&)>
      client_factory;
};

using common::ErrorContext;

class WorkerThread;

class Engine {
public:
  Engine(std::shared_ptr<const common::Scenario> scenario, EngineOptions options,
         const common::Clock& clock);
  ~Engine(); // halts and joins
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Called once, on the load thread that saw the run's first error, before anything else
  // happens to the run; called again for a data feeder that ran out with on_exhausted: halt
  // (error kind "data_exhausted"), which halts the run whatever the policy. Must be cheap and
  // thread-safe. Set before start().
  void setErrorListener(std::function<void(const ErrorContext&)> listener);

  // Called on a load thread after each error while errorCount() <= limit (the halt policy
  // counts errors cluster-wide). Must be cheap and thread-safe. Set before start().
  void setErrorTick(std::function<void()> tick, uint64_t limit);
  uint64_t errorCount() const { return errors_.load(std::memory_order_relaxed); }

  // Called on the last load thread to end, as it ends. Must be cheap and thread-safe.
  void setFinishedListener(std::function<void()> listener);

  // Starts the threads; the load curve (LoadSpec::stages) begins at t0 and ends at endTime().
  void start(common::SteadyTime t0);
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
  // When halt() took effect; only meaningful once halted().
  common::SteadyTime haltedAt() const;
  // Requests whose send began after the halt: 0 by construction, measured to prove it.
  uint64_t requestsStartedAfterHalt() const {
    return started_after_halt_.load(std::memory_order_relaxed);
  }
  std::optional<ErrorContext> firstError() const;

  // Adds every thread's counters since the last call into `into` and clears them.
  void collect(common::StatsBook& into);

  const common::Scenario& scenario() const { return *scenario_; }
  const common::Clock& clock() const { return clock_; }

private:
  friend class WorkerThread;
  friend struct VirtualUser;
  bool stopping() const {
    return halted_.load(std::memory_order_acquire) || finishing_.load(std::memory_order_acquire);
  }
  void reportError(ErrorContext context, bool force_halt = false);
  void noteError();
  // Takes one iteration from the cap; false when the cap is reached.
  bool takeIteration();
  // Signed: negative before the start.
  std::chrono::microseconds sinceStart() const {
    return std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - t0_);
  }
  const common::Flow& pickFlow(std::mt19937_64& rng) const;
  // The row index to use for feeder `f`, or nullopt when it ran out (order random never does).
  std::optional<size_t> drawRow(size_t f, std::mt19937_64& rng);
  struct FeederCursor;

  std::shared_ptr<const common::Scenario> scenario_;
  EngineOptions options_;
  const common::Clock& clock_;
  common::SteadyTime t0_{};
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

  std::vector<std::unique_ptr<FeederCursor>> feeders_;
  bool open_ = false;
  std::unique_ptr<common::LoadCurve> curve_; // this worker's: levels scaled by rate_share
  double flow_weight_total_ = 0;
  std::atomic<int64_t> iterations_left_{0}; // with a cap: iterations not yet started
  std::atomic<bool> data_stopped_{false};   // a feeder with on_exhausted: stop ran out

  std::atomic<bool> halted_{false};
  std::atomic<bool> finishing_{false};
  std::atomic<int64_t> halted_at_ns_{0};
  std::atomic<int> running_threads_{0};
  std::atomic<int> active_users_{0};
  std::atomic<uint64_t> started_after_halt_{0};
  std::atomic<bool> first_error_taken_{false};
  mutable std::mutex first_error_mutex_;
  std::optional<ErrorContext> first_error_;
};

} // namespace stampede::worker
