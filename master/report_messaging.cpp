#include "master/report_messaging.h"

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
    // Stamps and receipt times are put on the master's clock with each worker's offset, each
    // right to within its bound; a pair of workers adds two. One worker: its bound twice
    // (an upper bound; same-worker pairs are in fact exact).
    std::vector<double> bounds = clock_error_ms;
    std::sort(bounds.rbegin(), bounds.rend());
    m["clock_error_bound_ms"] =
        bounds.empty() ? 0.0 : bounds[0] + (bounds.size() > 1 ? bounds[1] : bounds[0]);
  }
  m["reconnects"] = counter(s, "reconnects");
  // From the loss (seen by a read, a write or the heart-beat watch) to the connection back up
  // with its subscriptions; null without a reconnect.
  m["reconnect_ms"] = s.reconnect_us.count() > 0 ? percentilesMs(s.reconnect_us) : json(nullptr);
  step["messaging"] = std::move(m);
}

} // namespace stampede::master
