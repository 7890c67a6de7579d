#include "master/report_messaging.h"

#include <fmt/format.h>

#include <algorithm>

namespace stampede::master {
namespace {

using nlohmann::json;

json percentilesMs(const common::Histogram& h) {
  auto ms = [](int64_t us) { return double(us) / 1000.0; };
  return {{"min", ms(h.minUs())},          {"mean", h.meanUs() / 1000.0},
          {"p50", ms(h.percentileUs(50))}, {"p90", ms(h.percentileUs(90))},
          {"p99", ms(h.percentileUs(99))}, {"p999", ms(h.percentileUs(99.9))},
          {"max", ms(h.maxUs())}};
}

uint64_t counter(const common::StepStats& s, const char* name) {
  const auto it = s.counters.find(name);
  return it == s.counters.end() ? 0 : it->second;
}

} // namespace

double clockErrorBoundMs(std::vector<double> bounds) {
  std::sort(bounds.rbegin(), bounds.rend());
  return bounds.empty() ? 0.0 : bounds[0] + (bounds.size() > 1 ? bounds[1] : bounds[0]);
}

std::vector<double> workerClockErrorsMs(const RunResult& r) {
  std::vector<double> out;
  for (const auto& w : r.workers)
    out.push_back(std::max(w.clock_error_ms, w.run_clock_error_ms));
  return out;
}

std::string formatMessagingSummary(const RunResult& r) {
  std::string out;
  const double bound = clockErrorBoundMs(workerClockErrorsMs(r));
  const auto row = [](std::string_view what, const common::Histogram& h, std::string_view tail) {
    return fmt::format("  {:<30} {:>8} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f}{}\n", what, h.count(),
                       double(h.percentileUs(50)) / 1000, double(h.percentileUs(90)) / 1000,
                       double(h.percentileUs(99)) / 1000, double(h.maxUs()) / 1000, tail);
  };
  for (size_t i = 0; i < r.book.steps.size(); ++i) {
    if (r.scenario->step_table[i].method != "SUBSCRIBE")
      continue;
    const auto& s = r.book.steps[i];
    out += fmt::format("\nmessaging \"{}\": end to end {:>8} {:>9} {:>9} {:>9} {:>9}\n",
                       r.scenario->step_table[i].name, "count", "p50 ms", "p90 ms", "p99 ms",
                       "max ms");
    out += row("from the send, all", s.service_us,
               fmt::format("  (clock error up to {:.3f} ms)", bound));
    out += row("same worker (exact)", s.same_worker_us, "");
    out += row("cross worker", s.cross_worker_us, fmt::format("  (+-{:.3f} ms)", bound));
    if (s.counters.count("lost") || s.counters.count("duplicate"))
      out += fmt::format(
          "  queues: lost {}, duplicate {}, in flight at the end {}, left on the queue {}\n",
          counter(s, "lost"), counter(s, "duplicate"), counter(s, "in_flight_at_end"),
          counter(s, "queued_at_end"));
  }
  return out;
}

void addMessagingFigures(json& step, const common::StepStats& s, std::string_view method, bool open,
                         const std::vector<double>& clock_error_ms) {
  if (method != "PUBLISH" && method != "SUBSCRIBE")
    return;
  step["protocols"] = json{{"STOMP 1.2", s.requests}};
  json m;
  if (method == "PUBLISH") {
    m["published"] = s.requests;
    m["confirmed"] = s.requests - s.errors;
    // Closed model: send -> receipt. Open model: latency is from the scheduled time, service
    // from the send.
    m["publish_ms"] = percentilesMs(open ? s.service_us : s.latency_us);
  } else {
    m["consumed"] = s.requests;
    // On the master's clock (each worker's offset applied): from the producer's scheduled
    // time (free of coordinated omission) and from its send.
    m["e2e_from_scheduled_ms"] = percentilesMs(s.latency_us);
    m["e2e_from_sent_ms"] = percentilesMs(s.service_us);
    m["redelivered"] = counter(s, "redelivered");
    m["stale"] = counter(s, "stale");
    // Stamps and receipt times are put on the master's clock with each worker's offset as
    // re-measured during the run, each right to within its bound; a pair of workers adds two.
    // One worker: its bound twice (an upper bound; same-worker pairs are in fact exact).
    const double bound = clockErrorBoundMs(clock_error_ms);
    m["clock_error_bound_ms"] = bound;
    // From the send, split: producer and consumer on one worker (one clock, no offset: the
    // exact reference) and on two (right to within the bound above).
    m["e2e_same_worker_ms"] = percentilesMs(s.same_worker_us);
    m["e2e_same_worker_ms"]["count"] = s.same_worker_us.count();
    m["e2e_cross_worker_ms"] = percentilesMs(s.cross_worker_us);
    m["e2e_cross_worker_ms"]["count"] = s.cross_worker_us.count();
    m["e2e_cross_worker_ms"]["clock_error_bound_ms"] = bound;
    // Queues: judged by the master over every worker's consumers (master/queue_accounting.h).
    m["lost"] = counter(s, "lost");
    m["duplicate"] = counter(s, "duplicate");
    m["in_flight_at_end"] = counter(s, "in_flight_at_end");
    m["queued_at_end"] = counter(s, "queued_at_end");
  }
  m["reconnects"] = counter(s, "reconnects");
  // From the loss (seen by a read, a write or the heart-beat watch) to the connection back up
  // with its subscriptions; null without a reconnect.
  m["reconnect_ms"] = s.reconnect_us.count() > 0 ? percentilesMs(s.reconnect_us) : json(nullptr);
  step["messaging"] = std::move(m);
}

} // namespace stampede::master
