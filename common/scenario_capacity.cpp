// The `capacity:` section: a search for the highest rate the target holds within its SLO.
// A probe's judged part (after its warmup) begins on one of the workers' 1 s stats cuts and
// lasts at least kMinCapacityJudged; probe and warmup need not be whole seconds.
#include "common/scenario_loader_internal.h"

#include <fmt/format.h>

namespace stampede::common::scenario_loader {

double Loader::percentage(const Field& f, const std::string& path, bool zero_ok) const {
  const std::string text = f.value.IsScalar() ? f.value.Scalar() : std::string();
  double value = -1;
  const bool percent = !text.empty() && text.back() == '%';
  const std::string_view digits(text.data(), text.size() - (percent ? 1 : 0));
  const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (!f.value.IsScalar() || !percent || ec != std::errc() ||
      ptr != digits.data() + digits.size() || value < 0 || (value == 0 && !zero_ok) || value >= 100)
    fail(f, path,
         std::string("expected a percentage ") + (zero_ok ? "from 0" : "above 0") +
             " and below 100 such as 5%, got " +
             (f.value.IsScalar() ? quoteValue(text) : describe(f.value)));
  return value / 100.0;
}

CapacitySpec Loader::capacitySpec(const Field& f) const {
  CapacitySpec spec;
  if (f.value.IsNull())
    return spec; // `capacity:` alone: the default search
  const Fields fields = mapping(f, "capacity",
                                {"start", "max", "probe", "warmup", "resolution", "confirm", "slo",
                                 "max_in_flight", "max_lag"});
  if (const Field* start = fields.find("start"))
    spec.start = rate(*start, "capacity.start", false);
  if (const Field* max = fields.find("max")) {
    spec.max = rate(*max, "capacity.max", false);
    if (spec.max < spec.start)
      fail(*max, "capacity.max",
           fmt::format("the highest rate to probe is below capacity.start ({:g}/s)", spec.start));
  } else if (spec.max < spec.start) {
    spec.max = spec.start;
  }
  const Field* probe = fields.find("probe");
  if (probe)
    spec.probe = duration(*probe, "capacity.probe", true);
  const Field* warmup = fields.find("warmup");
  if (warmup)
    spec.warmup = duration(*warmup, "capacity.warmup", false);
  else if (spec.probe - spec.warmup < kMinCapacityJudged)
    spec.warmup = microseconds(0); // the default does not fit: all of a short probe is judged
  if (spec.probe - spec.warmup < kMinCapacityJudged) {
    const auto seconds = [](microseconds d) {
      return fmt::format("{:g}s", double(d.count()) / 1e6);
    };
    const std::string floor = seconds(kMinCapacityJudged);
    if (warmup)
      fail(*warmup, "capacity.warmup",
           fmt::format("the warmup leaves {} of the {} probe to judge, under the {} floor (the "
                       "workers report once a second; docs/scenario.md): make the probe at "
                       "least {}",
                       seconds(std::max(microseconds(0), spec.probe - spec.warmup)),
                       seconds(spec.probe), floor, seconds(spec.warmup + kMinCapacityJudged)));
    fail(*probe, "capacity.probe",
         fmt::format("a probe lasts at least {} (the workers report once a second; "
                     "docs/scenario.md), got {}",
                     floor, quoteValue(probe->value.Scalar())));
  }
  if (const Field* resolution = fields.find("resolution"))
    spec.resolution = percentage(*resolution, "capacity.resolution", false);
  if (const Field* confirm = fields.find("confirm")) {
    const int64_t n = integer(confirm->value, markOf(*confirm), "capacity.confirm", "an integer");
    if (n < 0 || n > 10)
      fail(*confirm, "capacity.confirm",
           "expected 0 to 10 re-runs of the best passing rate, got " + std::to_string(n));
    spec.confirm = int(n);
  }
  if (const Field* slo = fields.find("slo")) {
    const Fields slo_fields = mapping(*slo, "capacity.slo", {"p99", "error_rate"});
    if (const Field* p99 = slo_fields.find("p99"))
      spec.slo_p99 = duration(*p99, "capacity.slo.p99", true);
    if (const Field* errors = slo_fields.find("error_rate"))
      spec.slo_error_rate = percentage(*errors, "capacity.slo.error_rate", true);
  }
  if (const Field* cap = fields.find("max_in_flight")) {
    spec.max_in_flight = positiveCount(*cap, "capacity.max_in_flight");
    checkUsers(int64_t(spec.max_in_flight), markOf(*cap), "capacity.max_in_flight",
               "iterations in flight");
  }
  if (const Field* lag = fields.find("max_lag"))
    spec.max_lag = duration(*lag, "capacity.max_lag", true);
  return spec;
}

LoadSpec Loader::capacityLoad(const CapacitySpec& spec, microseconds http_timeout) {
  // The workers run the open model; the master sets each probe's rate (SetRate). The load's
  // length is only a bound, far above what the search can take: at most this many probes,
  // each followed by a drain of up to http.timeout, twice over.
  const double grow = std::ceil(std::log2(std::max(1.0, spec.max / spec.start))) + 1;
  const double bisect = std::ceil(std::log2(1.0 / spec.resolution)) + 1;
  const double probes = grow + bisect + 2 + spec.confirm * (bisect + 2);
  const auto slot = spec.probe + http_timeout + std::chrono::seconds(3);
  LoadSpec load;
  load.model = LoadSpec::Model::Open;
  load.rate = spec.start;
  load.max_in_flight = spec.max_in_flight;
  load.duration = std::chrono::duration_cast<microseconds>(slot * (2 * probes));
  load.stages = {Stage{false, spec.start, microseconds(0)}, Stage{true, 0, load.duration}};
  return load;
}

} // namespace stampede::common::scenario_loader
