// timeseries.csv's rows: one per second of the run, each holding what the workers counted in
// that second, placed by the times the workers cut their Stats, not by when they arrived. A
// row waits until every running worker has reported past its end (or a grace period passed),
// so that a delayed Stats still lands in its own row. Control thread only.
#pragma once

#include "common/clock.h"
#include "common/histogram.h"
#include "stampede.pb.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

struct IntervalRow {
  int64_t second = 0;   // row k covers [t0 + (k-1) s, t0 + k s)
  double elapsed_s = 0; // its end: k, or the run's end for the last row
  double length_s = 1;  // what its rates divide by: 1, or the real length of the last row
  uint32_t users = 0;   // active users: each worker's last figure in the row, summed
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t dropped = 0;
  common::Histogram latency_us;
  common::Histogram service_us;      // open model (report.html); empty in the closed model
  common::Histogram schedule_lag_us; // open model (report.html)
  // It came after its second's row was written: an addendum to that row (same elapsed_s),
  // not a second of its own.
  bool late = false;
  uint32_t probe = 0; // a capacity run: the probe this second belongs to (0: none)
  // Filled in by the run loop as the row is written: the workers in the run at the row's end
  // (all that started, but those lost and not joined again by then), and the workers that left
  // or joined the run within the row's second ("lost H:P", "joined H:P", `;` between).
  uint32_t workers = 0;
  std::string events;
};

class IntervalRows {
public:
  // `grace`: how long a row waits for a silent worker's Stats past the row's end.
  IntervalRows(common::SteadyTime t0, std::chrono::nanoseconds grace);

  // A worker's delta (Stats or Final), cut at `at` on the master's clock. The requests are
  // placed at the middle of the delta's first second: a worker frozen or cut off sends one
  // late delta whose requests happened before the gap, not spread over it.
  void add(uint32_t worker, common::SteadyTime at, const wire::Stats& delta);

  // Rows complete at `now`, in order: every worker in `running` has reported past their end,
  // or the grace period has passed. Seconds without any data come out as empty rows.
  std::vector<IntervalRow> take(common::SteadyTime now, const std::vector<uint32_t>& running);
  // At the end of the run: every row left. The last one ends at the last delta's cut and
  // divides by its real length; a stub under 0.25 s joins the row before it when that one is
  // still held.
  std::vector<IntervalRow> finish();

  // What a worker last reported: for the estimate of what a lost worker never sent.
  struct Pace {
    common::SteadyTime last_at{}; // its last delta's cut
    double last_span_s = 0;       // that delta's length
    uint64_t last_requests = 0;   // and its requests
  };
  std::optional<Pace> pace(uint32_t worker) const;

private:
  struct Held {
    IntervalRow row;
    std::map<uint32_t, uint32_t> users; // worker -> its last active-users figure in the row
  };
  Held& heldFor(int64_t second, bool late);
  IntervalRow release(int64_t second); // held (users summed) or empty; drops it from held_
  void flushLate(std::vector<IntervalRow>& rows); // rows that came after theirs was written
  int64_t secondOf(common::SteadyTime t) const;   // the row holding time t (1 at the least)

  common::SteadyTime t0_;
  std::chrono::nanoseconds grace_;
  std::map<int64_t, Held> held_; // not written yet, by second
  std::map<int64_t, Held> late_; // for seconds already written
  int64_t written_through_ = 0;  // the last second written
  std::map<uint32_t, Pace> paces_;
  std::optional<common::SteadyTime> last_cut_;
};

} // namespace stampede::master
