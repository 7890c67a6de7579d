// The load engine of one worker: N load threads, each with its own io_context, HTTP client and
// stats book, running this worker's share of the virtual users as coroutines (closed model).
// start/halt/finish/collect are called from the control thread (any one thread); the load
// threads never wait on it, and the control thread never waits on a load thread's timer.
#pragma once

#include "common/clock.h"
#include "common/error_context.h"
#include "common/scenario.h"
#include "common/stats.h"
#include "worker/http_client.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace stampede::worker {

struct EngineOptions {
  int threads = 0;       // 0: one per core
  int users = -1;        // this worker's share; -1: the scenario's load.users
  uint64_t first_vu = 0; // virtual users are numbered from here (unique across the cluster)
  uint32_t worker_index = 0;
  uint32_t worker_count = 1; // the ramp interleaves workers: worker w starts at phase w/count
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
  // happens to the run. Must be cheap and thread-safe. Set before start().
  void setErrorListener(std::function<void(const ErrorContext&)> listener);

  // Called on a load thread after each error while errorCount() <= limit (the halt policy
  // counts errors cluster-wide). Must be cheap and thread-safe. Set before start().
  void setErrorTick(std::function<void()> tick, uint64_t limit);
  uint64_t errorCount() const { return errors_.load(std::memory_order_relaxed); }

  // Called on the last load thread to end, as it ends. Must be cheap and thread-safe.
  void setFinishedListener(std::function<void()> listener);

  // Starts the threads; the ramp begins at t0 and load is held until t0 + ramp + duration.
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
  void reportError(ErrorContext context);
  void noteError();

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
