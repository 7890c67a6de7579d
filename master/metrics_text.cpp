#include "master/metrics_text.h"

#include "common/load_plan.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <map>

namespace stampede::master {
namespace {

// A label value: backslash, double quote and newline escaped (the format's only escapes).
std::string labelValue(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

// Prometheus reads Go's float syntax; %g would print 1e+06, which it also reads, but integers
// are clearer whole.
std::string number(double v) {
  if (std::isnan(v))
    return "NaN";
  if (std::isinf(v))
    return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15)
    return fmt::format("{:.0f}", v);
  return fmt::format("{}", v);
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

// Counts at or below each bound, from the histogram's own counters (walked once, in the wire's
// run-length form). A counter is counted under a bound when its highest value is at or below
// it: the bound is then off by at most the histogram's 0.1 %.
std::vector<uint64_t> cumulativeCounts(const common::Histogram& h) {
  std::vector<uint64_t> counts;
  const auto encoded = h.encodeCounts();
  size_t index = 0;
  size_t bound = 0;
  uint64_t seen = 0;
  constexpr size_t kBounds = std::size(kLatencyBucketsS);
  auto boundUs = [](size_t b) { return int64_t(std::llround(kLatencyBucketsS[b] * 1e6)); };
  for (int64_t entry : encoded) {
    if (entry < 0) {
      index += size_t(-entry);
      continue;
    }
    const int64_t value = common::Histogram::highestEquivalent(index);
    while (bound < kBounds && value > boundUs(bound)) {
      counts.push_back(seen);
      ++bound;
    }
    seen += uint64_t(entry);
    ++index;
  }
  while (counts.size() < kBounds)
    counts.push_back(seen);
  return counts;
}

} // namespace

std::string metricsText(const MetricsState& s) {
  const auto& scenario = *s.scenario;
  const auto& book = *s.book;
  const bool open = scenario.anyOpen();
  std::string out;
  out.reserve(8192);

  header(out, "stampede_run_info", "gauge", "The run: scenario name and run id (always 1).");
  out += fmt::format("stampede_run_info{{name=\"{}\",run_id=\"{:016x}\",model=\"{}\"}} 1\n",
                     labelValue(scenario.name), s.run_id, open ? "open" : "closed");
  header(out, "stampede_run_elapsed_seconds", "gauge", "Seconds since the load started.");
  out += fmt::format("stampede_run_elapsed_seconds {}\n", number(s.elapsed_s));
  header(out, "stampede_run_finished", "gauge",
         "1 once the run has ended (the figures are final), else 0.");
  out += fmt::format("stampede_run_finished {}\n", s.exit_code ? 1 : 0);
  if (s.exit_code) {
    header(out, "stampede_run_exit_code", "gauge", "The master's exit code.");
    out += fmt::format("stampede_run_exit_code {}\n", *s.exit_code);
  }

  auto stepLabels = [&](size_t i) {
    const auto& step = scenario.step_table[i];
    return fmt::format("step=\"{}\",method=\"{}\"", labelValue(step.name), labelValue(step.method));
  };
  header(out, "stampede_requests_total", "counter",
         "Requests completed (a response or a transport error), by step.");
  for (size_t i = 0; i < book.steps.size(); ++i)
    out += fmt::format("stampede_requests_total{{{}}} {}\n", stepLabels(i), book.steps[i].requests);
  header(out, "stampede_errors_total", "counter", "Errors, by step and error kind.");
  for (size_t i = 0; i < book.steps.size(); ++i)
    for (const auto& [kind, count] : book.steps[i].errors_by_kind)
      out += fmt::format("stampede_errors_total{{{},kind=\"{}\"}} {}\n", stepLabels(i),
                         labelValue(kind), count);
  header(out, "stampede_cancelled_total", "counter", "Requests in flight when the run halted.");
  for (size_t i = 0; i < book.steps.size(); ++i)
    out +=
        fmt::format("stampede_cancelled_total{{{}}} {}\n", stepLabels(i), book.steps[i].cancelled);
  header(out, "stampede_dropped_total", "counter",
         "Open model: arrivals dropped because max_in_flight was reached, by step.");
  for (size_t i = 0; i < book.steps.size(); ++i)
    out += fmt::format("stampede_dropped_total{{{}}} {}\n", stepLabels(i), book.steps[i].dropped);

  // Both on the same buckets, by step. Closed model: service time is the latency (the send is
  // the start), as report.json's service_ms.
  auto histogram = [&](const char* name, const char* help, auto&& of) {
    header(out, name, "histogram", help);
    for (size_t i = 0; i < book.steps.size(); ++i) {
      const common::Histogram& h = of(book.steps[i]);
      const auto counts = cumulativeCounts(h);
      const std::string labels = stepLabels(i);
      for (size_t b = 0; b < counts.size(); ++b)
        out += fmt::format("{}_bucket{{{},le=\"{}\"}} {}\n", name, labels,
                           number(kLatencyBucketsS[b]), counts[b]);
      out += fmt::format("{}_bucket{{{},le=\"+Inf\"}} {}\n", name, labels, h.count());
      out += fmt::format("{}_sum{{{}}} {}\n", name, labels, number(double(h.sumUs()) / 1e6));
      out += fmt::format("{}_count{{{}}} {}\n", name, labels, h.count());
    }
  };
  histogram("stampede_latency_seconds", "Latency (open model: from the scheduled time), by step.",
            [](const common::StepStats& s) -> const common::Histogram& { return s.latency_us; });
  histogram("stampede_service_seconds",
            "Service time, from the send to the response (open model: without the schedule "
            "lag; closed model: the latency), by step.",
            [open](const common::StepStats& s) -> const common::Histogram& {
              return open ? s.service_us : s.latency_us;
            });

  header(out, "stampede_active_users", "gauge", "Virtual users active (busy or thinking).");
  out += fmt::format("stampede_active_users {}\n", s.active_users);
  // Per-flow load: the sum over the groups of the model the gauge names.
  double level = 0;
  for (const auto& group : scenario.groups)
    if (!s.exit_code && group.open() == open)
      level +=
          common::LoadCurve(group.load.stages)
              .levelAt(std::chrono::microseconds(std::llround(std::max(0.0, s.elapsed_s) * 1e6)));
  if (open) {
    header(out, "stampede_target_rate", "gauge", "The plan's arrival rate now, per second.");
    out += fmt::format("stampede_target_rate {}\n", number(level));
  } else {
    header(out, "stampede_target_users", "gauge", "The plan's virtual users now.");
    out += fmt::format("stampede_target_users {}\n", number(level));
  }
  header(out, "stampede_achieved_rate", "gauge", "Requests per second over the last second.");
  out += fmt::format("stampede_achieved_rate {}\n", number(s.achieved_rps));
  if (open) {
    header(out, "stampede_schedule_lag_p99_seconds", "gauge",
           "Open model: schedule lag p99 over the last second.");
    out += fmt::format("stampede_schedule_lag_p99_seconds {}\n", number(s.schedule_lag_p99_s));
  }
  header(out, "stampede_workers_up", "gauge",
         "Workers running (during the run) or done (after it).");
  out += fmt::format("stampede_workers_up {}\n", s.workers_up);
  header(out, "stampede_workers_lost", "gauge", "Workers lost mid-run.");
  out += fmt::format("stampede_workers_lost {}\n", s.workers_lost);
  return out;
}

} // namespace stampede::master
