// Counters of one step (or of the whole run), the book of every step's counters, and the
// hand-off of a load thread's book to the control thread, which collects it once a second.
#pragma once

#include "common/histogram.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace stampede::common {

struct StepStats {
  uint64_t requests = 0;  // completed: every request that got a response or a transport error
  uint64_t errors = 0;    // of those, the ones that count as errors (SCENARIO.md)
  uint64_t cancelled = 0; // in flight when the run halted; not errors, not requests
  uint64_t dropped = 0;   // open model: arrivals refused by max_in_flight
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::map<std::string, uint64_t> errors_by_kind; // "http_500", "timeout", "connect_refused"...
  uint64_t http2_responses = 0;                   // of `requests`, those answered over HTTP/2
  // Named counts that are neither requests nor errors: messaging's "redelivered", "stale"
  // (from an earlier run) and "reconnects" (worker/msg_steps.cpp).
  std::map<std::string, uint64_t> counters;
  Histogram latency_us;      // open model: from the scheduled time; closed: from the send
  Histogram service_us;      // from the send to done
  Histogram schedule_lag_us; // open model: send minus scheduled time, one per arrival
  // Messaging, SUBSCRIBE steps: end-to-end latency from the producer's send (as service_us),
  // split by producer and consumer on one worker (one clock: exact, the reference) or on two
  // (within the clock offsets' error bound).
  Histogram same_worker_us;
  Histogram cross_worker_us;
  // Messaging: from a connection lost to re-established with its subscriptions, per reconnect.
  Histogram reconnect_us;

  void merge(const StepStats& other);
  void reset();
};

// One StepStats per step of the scenario, indexed by the step's stats index.
struct StatsBook {
  std::vector<StepStats> steps;

  explicit StatsBook(size_t step_count = 0) : steps(step_count) {}
  void merge(const StatsBook& other); // grows to fit
  void reset();
  StepStats total() const;
};

// A load thread's counters and their hand-off: the load thread writes one of two books under
// a mutex; collect() swaps in the other (reset) one under that mutex and merges the full one
// outside it. A write waits at most for a swap, never for a merge.
class StatsHandOff {
public:
  explicit StatsHandOff(size_t step_count) : books_{StatsBook(step_count), StatsBook(step_count)} {}

  // The load thread: `write(book)` under the mutex, on the book being filled.
  template <class Write> void update(Write&& write) {
    std::lock_guard lock(mutex_);
    write(*filling_);
  }
  // The control thread (one caller at a time): adds the counters written since the last call
  // into `into` and clears them.
  void collect(StatsBook& into);

private:
  std::mutex mutex_;
  StatsBook books_[2];
  StatsBook* filling_ = &books_[0]; // guarded by mutex_; the other book is the collector's
};

} // namespace stampede::common
