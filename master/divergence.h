// Per-worker divergence: one load host that is worse than the rest of the cluster (a noisy
// neighbour, a saturated NIC, a stalled VM) skews the merged figures, so each worker's latency
// p99, error rate and schedule lag p99 (open model) since the start are set against the rest of
// the cluster's (every other worker merged). A worker is divergent when, with at least
// kMinRequests requests of its own and of the rest:
//   * its latency p99 is over kRatio times the rest's and kLatencyMarginMs above it, or
//   * its schedule lag p99 is over kRatio times the rest's and kLatencyMarginMs above it, or
//   * its error rate is over kRatio times the rest's and kErrorRateMargin above it.
// Only worse counts (a worker better than the rest is not a bad host). Per-worker figures come
// from small log-bucket histograms (16 buckets an octave: a p99 is within 4.5 % above the true
// value) fed from the same Stats deltas as the cluster's book, so memory is 7 KB a worker.
// Control thread only.
#pragma once

#include "master/run_result.h"
#include "stampede.pb.h"

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

class Divergence {
public:
  static constexpr uint64_t kMinRequests = 200;
  static constexpr double kRatio = 2.0;
  static constexpr double kLatencyMarginMs = 50.0;
  static constexpr double kErrorRateMargin = 0.10; // 10 percentage points

  // A worker's Stats or Final delta.
  void add(uint32_t worker, const wire::Stats& delta);

  struct Figures {
    uint64_t requests = 0;
    uint64_t errors = 0;
    double error_rate = 0;
    double p99_ms = 0;
    std::optional<double> schedule_lag_p99_ms; // open model (lag samples seen)
    std::string divergent;                     // "" or why: "latency p99 812 ms vs 3.1 ms ..."
  };
  // Every worker that reported, judged against the rest as of now.
  std::map<uint32_t, Figures> judge() const;
  // For the live line: "" or "DIVERGENT worker 1: schedule lag p99 ..." (each divergent one).
  std::string liveNote() const;

  // Log buckets: bucket b holds values up to 2^(b/16) us; the last also holds overflow.
  static constexpr size_t kBuckets = 16 * 26 + 1;
  using Buckets = std::array<uint64_t, kBuckets>;
  static size_t bucketOf(int64_t value_us);
  static double upperUs(size_t bucket);
  static double percentileUs(const Buckets& b, double percentile); // 0 when empty

private:
  struct Worker {
    uint64_t requests = 0;
    uint64_t errors = 0;
    Buckets latency{};
    Buckets lag{};
    uint64_t lag_samples = 0;
  };
  static void addWire(const wire::Histogram& h, Buckets& into, uint64_t* samples);

  std::map<uint32_t, Worker> workers_;
};

// Each worker's figures and verdict into its row (workers that never reported keep nulls).
void addDivergence(const Divergence& divergence, std::vector<WorkerResult>& workers);

} // namespace stampede::master
