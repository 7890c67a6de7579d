#include "master/capacity_report.h"

#include "master/report.h"

namespace stampede::master {
namespace {

using nlohmann::json;

json percentilesJson(const PercentilesMs& p) {
  return {{"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"max", p.max}};
}

json orNull(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

} // namespace

json capacityJson(const CapacityResult& c, common::SteadyTime t0) {
  json probes = json::array();
  for (const auto& p : c.probes)
    probes.push_back(
        {{"probe", p.probe},
         {"rate_asked", p.rate_asked},
         {"rate_achieved", p.rate_achieved},
         {"start_ms", p.start_ms},
         {"end_ms", p.end_ms},
         {"judged_from_ms", p.judged_from_ms},
         {"latency_ms", percentilesJson(p.latency_ms)},
         {"service_ms", percentilesJson(p.service_ms)},
         {"lag_ms", percentilesJson(p.lag_ms)},
         {"requests", p.requests},
         {"errors", p.errors},
         {"error_rate", p.error_rate},
         {"errors_by_kind", p.errors_by_kind},
         {"dropped", p.dropped},
         {"generator_busy", p.generator_busy},
         {"verdict", probeVerdictName(p.verdict)},
         {"reason", p.reason},
         {"first_error", p.first_error ? errorJson(*p.first_error, t0) : json(nullptr)}});
  const auto& spec = c.spec;
  return {
      {"max_passing_rate", orNull(c.max_passing_rate)},
      {"first_failing_rate", orNull(c.first_failing_rate)},
      {"limited_by", c.limited_by ? json(limitedByName(*c.limited_by)) : json(nullptr)},
      {"slo",
       {{"p99_ms", double(spec.slo_p99.count()) / 1000.0}, {"error_rate", spec.slo_error_rate}}},
      {"estimated_workers_needed",
       c.estimated_workers_needed ? json(*c.estimated_workers_needed) : json(nullptr)},
      {"probes", std::move(probes)}};
}

} // namespace stampede::master
