#include "master/report.h"

#include "common/protocol.h"
#include "master/capacity_report.h"
#include "master/halt_policy.h"
#include "master/junit.h"
#include "master/report_html.h"
#include "master/report_messaging.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace stampede::master {
namespace {

using nlohmann::json;

double ms(int64_t us) {
  return double(us) / 1000.0;
}

json latencyJson(const common::Histogram& h) {
  return {{"min", ms(h.minUs())},
          {"mean", h.meanUs() / 1000.0},
          {"p50", ms(h.percentileUs(50))},
          {"p90", ms(h.percentileUs(90))},
          {"p95", ms(h.percentileUs(95))},
          {"p99", ms(h.percentileUs(99))},
          {"p999", ms(h.percentileUs(99.9))},
          {"max", ms(h.maxUs())}};
}

json countsJson(const common::StepStats& s, double duration_s, bool open) {
  json protocols = json::object();
  if (s.requests > s.http2_responses)
    protocols["HTTP/1.1"] = s.requests - s.http2_responses;
  if (s.http2_responses > 0)
    protocols["HTTP/2"] = s.http2_responses;
  json counts = {{"requests", s.requests},
                 {"errors", s.errors},
                 {"cancelled", s.cancelled},
                 {"dropped", s.dropped},
                 {"rps", duration_s > 0 ? double(s.requests) / duration_s : 0.0},
                 {"bytes_in", s.bytes_in},
                 {"bytes_out", s.bytes_out},
                 {"errors_by_kind", s.errors_by_kind},
                 {"protocols", std::move(protocols)},
                 // Open model: from the scheduled time. Closed: from the send.
                 {"latency_ms", latencyJson(s.latency_us)}};
  // Closed model: service time is the latency; there is no schedule to lag behind.
  counts["service_ms"] = latencyJson(open ? s.service_us : s.latency_us);
  counts["schedule_lag_ms"] = open ? latencyJson(s.schedule_lag_us) : json(nullptr);
  if (!s.counters.empty())
    counts["counters"] = s.counters; // messaging: redelivered, stale, reconnects
  return counts;
}

void markOpen(const std::vector<common::Step>& steps, bool open, std::vector<bool>& step_open) {
  using Kind = common::Step::Kind;
  for (const auto& step : steps) {
    if (step.kind == Kind::Loop)
      markOpen(step.steps, open, step_open);
    else if (step.kind != Kind::Think && step.stats_index < step_open.size())
      step_open[step.stats_index] = open; // a step with a row of its own
  }
}

// By step (Scenario::step_table): whether its flow runs in the open model. With per-flow
// load:, one run may mix both: a closed step's latency is from its send, and is its service.
std::vector<bool> openSteps(const common::Scenario& scenario) {
  std::vector<bool> step_open(scenario.step_table.size(), scenario.anyOpen());
  for (const auto& group : scenario.groups)
    for (size_t f : group.flows)
      markOpen(scenario.flows[f].steps, group.open(), step_open);
  return step_open;
}

double secondsSince(common::SteadyTime t0, common::SteadyTime t) {
  return std::chrono::duration<double>(t - t0).count();
}

std::string isoTime(std::chrono::system_clock::time_point t) {
  auto ms_part =
      std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03d}Z",
                     fmt::gmtime(std::chrono::system_clock::to_time_t(t)), ms_part);
}

} // namespace

const char* haltReasonName(HaltReason r) {
  switch (r) {
  case HaltReason::FirstError:
    return "first_error";
  case HaltReason::ErrorCount:
    return "error_count";
  case HaltReason::ErrorRate:
    return "error_rate";
  case HaltReason::Threshold:
    return "threshold";
  case HaltReason::DataExhausted:
    return "data_exhausted";
  case HaltReason::Interrupted:
    return "interrupted";
  case HaltReason::WorkerLost:
    return "worker_lost";
  }
  return "unknown";
}

const char* outcomeName(Outcome o) {
  switch (o) {
  case Outcome::Passed:
    return "passed";
  case Outcome::Halted:
    return "halted";
  case Outcome::Failed:
    return "failed";
  }
  return "unknown";
}

json errorJson(const common::ErrorContext& e, common::SteadyTime t0) {
  json headers = json::object();
  for (const auto& [name, value] : e.headers)
    headers[name] = value;
  return {{"worker", e.worker_index}, {"vu", e.vu},
          {"flow", e.flow},           {"step", e.step},
          {"method", e.method},       {"url", e.url},
          {"status", e.status},       {"error_kind", e.error_kind},
          {"detail", e.detail},       {"headers", std::move(headers)},
          {"body", e.body},           {"at_s", secondsSince(t0, e.at)},
          {"at", isoTime(e.wall_at)}};
}

json buildReport(const RunResult& r) {
  json report;
  report["name"] = r.scenario->name;
  report["scenario_file"] = r.scenario->file;
  const auto& target = r.scenario->target;
  const bool bracket = target.host.find(':') != std::string::npos; // an IPv6 address
  report["target"] =
      target.host.empty()
          ? json(nullptr)
          : json(fmt::format("{}://{}{}{}:{}{}", target.scheme, bracket ? "[" : "", target.host,
                             bracket ? "]" : "", target.port, target.base_path));
  report["outcome"] = outcomeName(r.outcome);
  report["exit_code"] = r.exit_code;
  report["started_at"] = isoTime(r.started_at);
  report["duration_s"] = r.duration_s;
  const auto loadJson = [](const common::LoadSpec& load) {
    const bool open = load.model == common::LoadSpec::Model::Open;
    json stages = json::array();
    for (const auto& stage : load.stages)
      stages.push_back(stage.hold
                           ? json{{"hold_s", double(stage.over.count()) / 1e6}}
                           : json{{"to", stage.to}, {"over_s", double(stage.over.count()) / 1e6}});
    return json{{"model", open ? "open" : "closed"},
                {"users", open ? json(nullptr) : json(load.users)},
                {"rate", open ? json(load.peak()) : json(nullptr)},
                {"max_in_flight",
                 open ? json(load.max_in_flight ? load.max_in_flight : common::kDefaultMaxInFlight)
                      : json(nullptr)},
                {"iterations", load.iterations ? json(load.iterations) : json(nullptr)},
                {"stages", std::move(stages)}};
  };
  const auto& groups = r.scenario->groups;
  const bool open = r.scenario->anyOpen();
  // The first group's load as before; with per-flow load:, every group under load.groups.
  report["load"] = loadJson(groups.empty() ? r.scenario->load : groups[0].load);
  if (groups.size() > 1) {
    json all = json::array();
    for (const auto& group : groups) {
      json g = loadJson(group.load);
      g["path"] = group.path;
      json flows = json::array();
      for (size_t f : group.flows)
        flows.push_back(r.scenario->flows[f].name);
      g["flows"] = std::move(flows);
      all.push_back(std::move(g));
    }
    report["load"]["groups"] = std::move(all);
  }
  report["overrides"] = r.overrides;
  if (r.start_barrier_s)
    report["messaging"] = {{"start_barrier_seconds", *r.start_barrier_s},
                           {"start_barrier_subscriptions", r.start_barrier_subscriptions}};
  const std::vector<bool> step_open = openSteps(*r.scenario);
  auto total = r.book.total();
  if (open && std::find(step_open.begin(), step_open.end(), false) != step_open.end()) {
    // Open and closed flows: each step's own service time (a closed step's is its latency).
    total.service_us.reset();
    for (size_t i = 0; i < r.book.steps.size() && i < step_open.size(); ++i)
      total.service_us.merge(step_open[i] ? r.book.steps[i].service_us
                                          : r.book.steps[i].latency_us);
  }
  report["totals"] = countsJson(total, r.duration_s, open);
  json warnings = json::array();
  if (open && total.schedule_lag_us.percentileUs(99) > kSaturatedLagUs)
    warnings.push_back(fmt::format("load generator saturated: figures understate latency "
                                   "(schedule lag p99 {:.1f} ms > {} ms)",
                                   ms(total.schedule_lag_us.percentileUs(99)),
                                   kSaturatedLagUs / 1000));
  for (const auto& w : r.workers)
    if (w.state == "left")
      warnings.push_back(fmt::format("worker {} ({}) left the run early: {}; the run's load was "
                                     "short of plan from then on",
                                     w.id, w.address, w.why));
  for (const auto& warning : r.warnings)
    warnings.push_back(warning);
  for (const auto& warning : r.scenario->warnings)
    warnings.push_back(warning);
  report["saturated"] = open && total.schedule_lag_us.percentileUs(99) > kSaturatedLagUs;
  report["warnings"] = std::move(warnings);
  // Lost workers' requests after their last Stats: estimated, never in `totals`.
  report["unreported_requests_estimate"] = r.unreported_estimate;
  json steps = json::array();
  const std::vector<double> clock_error_ms = workerClockErrorsMs(r);
  for (size_t i = 0; i < r.book.steps.size(); ++i) {
    const bool step_is_open = i < step_open.size() ? bool(step_open[i]) : open;
    json step = countsJson(r.book.steps[i], r.duration_s, step_is_open);
    step["name"] = r.scenario->step_table[i].name;
    step["method"] = r.scenario->step_table[i].method;
    addMessagingFigures(step, r.book.steps[i], r.scenario->step_table[i].method, step_is_open,
                        clock_error_ms);
    steps.push_back(std::move(step));
  }
  report["steps"] = std::move(steps);
  if (r.halt) {
    const auto& h = *r.halt;
    auto optional = [](const std::optional<double>& v) { return v ? json(*v) : json(nullptr); };
    json also_failed = json::array();
    for (const auto& e : h.also_failed)
      also_failed.push_back({{"worker", e.worker_index},
                             {"step", e.step},
                             {"error_kind", e.error_kind},
                             {"status", e.status},
                             {"at_s", secondsSince(r.t0, e.at)}});
    auto optionalCount = [](const std::optional<uint64_t>& v) {
      return v ? json(*v) : json(nullptr);
    };
    report["halt"] = {
        {"reason", haltReasonName(h.reason)},
        {"worker", h.error_at ? json(h.error_worker) : json(nullptr)},
        {"step", h.step.empty() ? json(nullptr) : json(h.step)},
        {"error_kind", h.error_kind.empty() ? json(nullptr) : json(h.error_kind)},
        {"at_s", h.at_s},
        {"halt_sent_ms", optional(h.halt_sent_ms)},
        {"all_stopped_ms", optional(h.all_stopped_ms)},
        {"requests_sent_after_first_error", optionalCount(h.requests_sent_after_first_error)},
        {"clock_error_ms", optional(h.clock_error_ms)},
        {"first_error_monotonic_ns",
         h.error_at ? json(common::steadyNs(*h.error_at)) : json(nullptr)},
        {"cancelled", h.cancelled},
        {"threshold", h.threshold.empty() ? json(nullptr) : json(h.threshold)},
        {"value", optional(h.observed)},
        {"also_failed", std::move(also_failed)}};
  } else {
    report["halt"] = nullptr;
  }
  json workers = json::array();
  auto orNull = [](const auto& v) { return v ? json(*v) : json(nullptr); };
  for (const auto& w : r.workers) {
    json events = json::array();
    for (const auto& event : w.events)
      events.push_back({{"at_s", event.at_s}, {"event", event.event}, {"reason", event.reason}});
    workers.push_back(
        {{"id", w.id},
         {"address", w.address},
         {"state", w.state},
         {"why", w.why.empty() ? json(nullptr) : json(w.why)},
         {"requests", w.requests},
         {"errors", w.errors},
         {"users", w.users},
         {"threads", w.threads},
         {"clock_offset_ms", w.clock_offset_ms},
         {"lost_at_s", orNull(w.lost_at_s)},
         {"last_stats_at_s", orNull(w.last_stats_at_s)},
         {"unreported_requests_estimate", w.unreported_estimate
                                              ? json{{"requests", *w.unreported_estimate},
                                                     {"low", w.unreported_low.value_or(0)},
                                                     {"high", w.unreported_high.value_or(0)}}
                                              : json(nullptr)},
         {"clock_error_ms", w.clock_error_ms},
         {"run_clock_error_ms", w.run_clock_error_ms},
         {"clock_offset_end_ms", w.clock_offset_end_ms},
         {"clock_drift_ppm", w.clock_drift_ppm},
         {"requests_sent_after_first_error", orNull(w.requests_sent_after_first_error)},
         {"stop_ms", orNull(w.stop_ms)},
         {"p99_ms", orNull(w.p99_ms)},
         {"schedule_lag_p99_ms", orNull(w.schedule_lag_p99_ms)},
         {"error_rate", orNull(w.error_rate)},
         {"divergent", w.divergent.empty() ? json(nullptr) : json(w.divergent)},
         {"events", std::move(events)}});
  }
  report["workers"] = std::move(workers);
  json thresholds = json::array();
  for (const auto& t : r.thresholds)
    thresholds.push_back({{"expr", t.expr},
                          {"window_s", t.window_s},
                          {"abort", t.abort},
                          {"value", t.value ? json(*t.value) : json(nullptr)},
                          {"passed", t.passed}});
  report["thresholds"] = std::move(thresholds);
  report["control_messages_dropped"] = r.dropped_messages;
  report["first_error"] = r.first_error ? errorJson(*r.first_error, r.t0) : json(nullptr);
  report["capacity"] = r.capacity ? capacityJson(*r.capacity, r.t0) : json(nullptr);
  return report;
}

namespace {

// Writes DIR/NAME atomically (NAME.tmp, then rename). Returns an error message or "".
std::string writeAtomically(const std::string& dir, const std::string& name,
                            const std::string& text) {
  auto final_path = std::filesystem::path(dir) / name;
  auto temp_path = std::filesystem::path(dir) / (name + ".tmp");
  std::string error;
  {
    std::ofstream out(temp_path, std::ios::binary | std::ios::trunc);
    if (!out)
      return fmt::format("{}: cannot write: {}", temp_path.string(), std::strerror(errno));
    out << text;
    if (!out.flush())
      error = fmt::format("{}: cannot write: {}", final_path.string(), std::strerror(errno));
  }
  std::error_code ec;
  if (error.empty()) {
    std::filesystem::rename(temp_path, final_path, ec);
    if (ec)
      error = fmt::format("{}: cannot write: {}", final_path.string(), ec.message());
  }
  // A half-written temporary is no report: never leave it behind.
  if (!error.empty())
    std::filesystem::remove(temp_path, ec);
  return error;
}

// Bodies are arbitrary bytes: invalid UTF-8 is replaced instead of failing the whole report.
std::string reportText(const json& report) {
  return report.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

} // namespace

ReportsWritten writeReports(const std::string& dir, RunResult& r) {
  ReportsWritten out;
  auto fail = [&](const std::string& error) {
    r.exit_code = HaltPolicy::afterOutputFailure(r.exit_code);
    out.warnings.push_back(fmt::format("{}; no report", error));
    r.warnings.push_back(out.warnings.back());
  };
  std::string text = reportText(buildReport(r));
  if (auto error = writeAtomically(dir, "report.json", text); !error.empty()) {
    fail(error);
    return out;
  }
  // The other two are made from report.json's own text read back, so that they show exactly
  // its figures (and its UTF-8, invalid bytes replaced).
  auto derived = [&](const std::string& report_text, const char* name) {
    const json report = json::parse(report_text);
    return writeAtomically(dir, name,
                           std::string_view(name) == "junit.xml"
                               ? junitXml(report)
                               : reportHtml(report, seriesJson(r.series)));
  };
  std::vector<const char*> written = {"report.json"};
  for (const char* name : {"junit.xml", "report.html"}) {
    if (auto error = derived(text, name); !error.empty())
      fail(error);
    else
      written.push_back(name);
  }
  if (!out.warnings.empty()) {
    // The exit code and warnings changed: what was written says so too.
    text = reportText(buildReport(r));
    for (const char* name : written) {
      auto error = std::string_view(name) == "report.json" ? writeAtomically(dir, name, text)
                                                           : derived(text, name);
      if (!error.empty())
        out.warnings.push_back(fmt::format("{}; no report", error));
    }
  }
  for (const char* name : written)
    out.written.push_back((std::filesystem::path(dir) / name).string());
  return out;
}

Timeseries::~Timeseries() {
  if (file_)
    std::fclose(file_);
}

std::string Timeseries::write(const std::string& text) {
  // Unbuffered: each row is one write(2), and a full disk fails that row, not a later one.
  if (std::fwrite(text.data(), 1, text.size(), file_) == text.size())
    return "";
  auto error = fmt::format("{}: cannot write: {}", path_, std::strerror(errno));
  std::clearerr(file_);
  return error;
}

std::string Timeseries::open(const std::string& dir) {
  path_ = (std::filesystem::path(dir) / "timeseries.csv").string();
  file_ = std::fopen(path_.c_str(), "w");
  if (!file_)
    return fmt::format("{}: cannot write: {}", path_, std::strerror(errno));
  std::setvbuf(file_, nullptr, _IONBF, 0);
  return write("elapsed_s,users,requests,rps,errors,errors_total,p50_ms,p90_ms,p99_ms,max_ms,"
               "bytes_in,bytes_out,dropped,late,probe,workers,events\n");
}

void Timeseries::record(const IntervalRow& row) {
  const auto& h = row.latency_us;
  auto rate = [&](uint64_t requests) {
    return row.length_s > 0 ? double(requests) / row.length_s : 0.0;
  };
  if (row.late) {
    // An addendum to a row already written: its counts go to that second.
    for (auto it = series_->rbegin(); it != series_->rend(); ++it) {
      if (it->elapsed_s == row.elapsed_s) {
        it->requests += row.requests;
        it->errors += row.errors;
        it->dropped += row.dropped;
        it->rps = it->length_s > 0 ? double(it->requests) / it->length_s : 0.0;
        return;
      }
    }
  }
  SeriesPoint p;
  p.elapsed_s = row.elapsed_s;
  p.length_s = row.length_s;
  p.users = row.users;
  p.requests = row.requests;
  p.rps = rate(row.requests);
  p.errors = row.errors;
  p.dropped = row.dropped;
  p.p50_ms = ms(h.percentileUs(50));
  p.p90_ms = ms(h.percentileUs(90));
  p.p99_ms = ms(h.percentileUs(99));
  p.max_ms = ms(h.maxUs());
  p.service_p50_ms = ms(row.service_us.percentileUs(50));
  p.service_p99_ms = ms(row.service_us.percentileUs(99));
  p.lag_p99_ms = ms(row.schedule_lag_us.percentileUs(99));
  series_->push_back(p);
}

std::string Timeseries::append(const IntervalRow& row) {
  errors_total_ += row.errors;
  if (series_)
    record(row);
  if (!file_)
    return "";
  const auto& h = row.latency_us;
  return write(fmt::format(
      "{:.3f},{},{},{:.1f},{},{},{:.3f},{:.3f},{:.3f},{:.3f},{},{},{},{},{},{},{}\n", row.elapsed_s,
      row.users, row.requests, row.length_s > 0 ? double(row.requests) / row.length_s : 0.0,
      row.errors, errors_total_, ms(h.percentileUs(50)), ms(h.percentileUs(90)),
      ms(h.percentileUs(99)), ms(h.maxUs()), row.bytes_in, row.bytes_out, row.dropped,
      row.late ? 1 : 0, row.probe, row.workers, row.events));
}

} // namespace stampede::master
