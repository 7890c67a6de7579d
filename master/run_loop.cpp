#include "master/run_loop.h"

#include "common/protocol.h"
#include "master/capacity_probes.h"
#include "master/interrupt.h"
#include "master/metrics_publish.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string_view>

namespace stampede::master {
namespace {

using namespace std::chrono_literals;
using common::SteadyTime;

// How long each poll waits for a message before the loop checks the clock again.
constexpr auto kRunPoll = 10ms;
// A delta's cut time this far outside the run is nonsense, and taken as its arrival.
constexpr auto kCutTimeTolerance = 1s;

wire::HaltReason toWire(HaltReason reason) {
  switch (reason) {
  case HaltReason::FirstError:
    return wire::HALT_REASON_FIRST_ERROR;
  case HaltReason::ErrorCount:
    return wire::HALT_REASON_ERROR_COUNT;
  case HaltReason::ErrorRate:
    return wire::HALT_REASON_ERROR_RATE;
  case HaltReason::Threshold:
    return wire::HALT_REASON_THRESHOLD;
  case HaltReason::DataExhausted:
    return wire::HALT_REASON_DATA_EXHAUSTED;
  case HaltReason::Interrupted:
    return wire::HALT_REASON_INTERRUPTED;
  case HaltReason::WorkerLost:
    return wire::HALT_REASON_WORKER_LOST;
  }
  return wire::HALT_REASON_UNSPECIFIED;
}

// When a delta was cut, on our clock. A sender that does not say (0), or says nonsense, is
// taken to have cut it when it arrived.
SteadyTime cutTime(const wire::Stats& stats, SteadyTime t0, SteadyTime now) {
  const auto at = common::fromSteadyNs(stats.at_master_ns());
  return stats.at_master_ns() != 0 && at > t0 - kCutTimeTolerance && at < now + kCutTimeTolerance
             ? at
             : now;
}

LostWorker estimateLost(const WorkerLink& link, const std::optional<IntervalRows::Pace>& pace,
                        SteadyTime t0, SteadyTime now, SteadyTime end_at) {
  LostWorker lost;
  lost.lost_at_s = seconds(now - t0);
  if (!pace)
    return lost;
  lost.last_stats_at_s = seconds(pace->last_at - t0);
  double rate = 0;
  if (pace->last_span_s >= 0.2)
    rate = double(pace->last_requests) / pace->last_span_s;
  else if (pace->last_at > t0)
    rate = double(link.requests) / seconds(pace->last_at - t0);
  const SteadyTime from = std::min(std::max(link.last_heard, pace->last_at), end_at);
  const SteadyTime to = std::max(from, std::min(pace->last_at + kTickInterval, end_at));
  auto requests = [&](SteadyTime t) {
    return static_cast<uint64_t>(std::llround(rate * std::max(0.0, seconds(t - pace->last_at))));
  };
  lost.low = requests(from);
  lost.high = requests(to);
  lost.estimate = requests(from + (to - from) / 2);
  return lost;
}

std::string describeLost(const WorkerLink& link, const LostWorker& lost) {
  std::string text =
      fmt::format("{} lost at {:.1f}s into the run ({}): {} requests and {} "
                  "errors received from it",
                  workerLabel(link), lost.lost_at_s, link.why, link.requests, link.errors);
  if (lost.estimate)
    text += fmt::format(", the last counted by {:.1f}s; an estimated {} more requests ({} to {}) "
                        "it made after that were never reported and are in no total",
                        *lost.last_stats_at_s, *lost.estimate, *lost.low, *lost.high);
  else
    text += "; it sent no stats, so what it did is unknown";
  if (link.users)
    text += fmt::format("; its {} users stopped with it", link.users);
  return text;
}

// Where each feeder's cursor of the worker is, for a worker that may take its place later.
void notePositions(WorkerLink& link, const wire::Stats& stats) {
  const auto& now = stats.feeder_positions();
  link.feeder_positions.resize(size_t(now.size()), 0);
  link.feeder_last_step.resize(size_t(now.size()), 0);
  for (int f = 0; f < now.size(); ++f) {
    const uint64_t before = link.feeder_positions[size_t(f)];
    link.feeder_last_step[size_t(f)] = now[f] > before ? now[f] - before : 0;
    link.feeder_positions[size_t(f)] = std::max(before, now[f]);
  }
}

// A worker stopped by its operator mid-run, whose Final said so: not lost, since its figures are
// complete; the run goes on with the others and ends as it would have (the report warns).
void noteLeft(WorkerLink& link, double at_s) {
  link.state = LinkState::Left;
  link.why = fmt::format("stopped (SIGINT or SIGTERM) at {:.1f}s; its figures are complete", at_s);
  fmt::print(stderr, "\n{}: left the run: {}\n", workerLabel(link), link.why);
}

// A timeseries row's workers in the run at its end (all that started, but those lost and not
// joined again by then), and who left or joined within its second.
void noteMembership(const RunContext& run, IntervalRow& row) {
  for (const auto* link : run.joined) {
    // A worker that dialled in mid-run (reverse mode) was not in the run before it joined.
    bool member = link->events.empty() || std::string_view(link->events.front().what) != "joined";
    for (const auto& event : link->events)
      if (event.at_s <= row.elapsed_s)
        member = std::string_view(event.what) == "joined";
    row.workers += member ? 1 : 0;
    for (const auto& event : link->events)
      if (event.at_s > row.elapsed_s - row.length_s && event.at_s <= row.elapsed_s)
        row.events += fmt::format("{}{} {}", row.events.empty() ? "" : ";", event.what, link->name);
  }
}

} // namespace

RunLoop::RunLoop(RunContext& run, RunResult& result)
    : run_(run), result_(result),
      progress_(run.cli, run.scenario.step_table.size(), seconds(run.scenario.length())),
      // Rows wait this long for a worker that went silent, so that its Stats, when they come,
      // still land in their own rows; longer than that it is lost.
      rows_(run.t0, run.cli.heartbeat_timeout + kTickInterval), rejoin_(run),
      policy_(run.scenario.halt), judge_(run.scenario), last_tick_(run.t0),
      next_tick_(run.t0 + kTickInterval), queue_accounting_(run.scenario) {
  timeseries_.recordInto(result.series);
}

// A warning goes to stderr at once (a soak runs for hours) and into the report.
void RunLoop::warn(std::string text) {
  fmt::print(stderr, "\nwarning: {}\n", text);
  result_.warnings.push_back(std::move(text));
}

void RunLoop::writeRows(std::vector<IntervalRow> finished) {
  for (auto& row : finished) {
    if (run_.capacity)
      row.probe = run_.capacity->probeOfSecond(row.second);
    if (!row.late)
      noteMembership(run_, row);
    if (auto error = timeseries_.append(row); !error.empty() && !outputs_failed_) {
      outputs_failed_ = true;
      warn(fmt::format("{}; timeseries.csv is incomplete from {:.0f}s on", error, row.elapsed_s));
    }
  }
}

void RunLoop::openOutputs() {
  const auto& out_dir = run_.cli.out_dir;
  if (out_dir.empty())
    return;
  // The run has started: the previous run's reports go, so that the directory never holds
  // one run's timeseries.csv next to another run's report.json.
  std::error_code ec;
  for (const char* name : kReportFiles)
    std::filesystem::remove(std::filesystem::path(out_dir) / name, ec);
  if (auto error = timeseries_.open(out_dir); !error.empty()) {
    outputs_failed_ = true;
    warn(fmt::format("{}; timeseries.csv is incomplete", error));
  }
}

// Sends the halt the policy just decided to every running worker.
void RunLoop::sendHalt(Decision decision, SteadyTime now) {
  if (decision != Decision::Halt)
    return;
  const HaltInfo& info = *policy_.halt();
  wire::Envelope halt;
  halt.mutable_halt()->set_reason(toWire(info.reason));
  if (info.error_at)
    halt.mutable_halt()->set_first_error_master_ns(common::steadyNs(*info.error_at));
  run_.cluster.broadcast(halt, {LinkState::Running});
  halt_sent_at_ = now;
}

// halt.on_error {count: N}: the sum over workers, each reporting every error at once.
void RunLoop::checkErrorCount() {
  uint64_t errors = 0;
  for (auto* link : run_.joined)
    errors += link->error_tally;
  auto now = run_.clock.now();
  sendHalt(policy_.onErrorCount(errors, seconds(now - run_.t0)), now);
}

void RunLoop::onMessage(WorkerLink& link, const wire::Envelope& e) {
  if (rejoin_.onMessage(link, e, run_.clock.now(), !stop_sent_ && !policy_.halt()))
    return;
  switch (e.body_case()) {
  case wire::Envelope::kError: {
    auto context = common::errorFromWire(e.error().context());
    const double at_s = seconds(context.at - run_.t0);
    if (run_.capacity)
      run_.capacity->onError(context);
    // First, before anything else queued: every worker hears Halt now.
    sendHalt(policy_.onError(std::move(context), e.error().data_exhausted(), link.index, at_s),
             run_.clock.now());
    break;
  }
  case wire::Envelope::kErrorTally:
    link.error_tally = std::max(link.error_tally, e.error_tally().errors());
    checkErrorCount();
    break;
  case wire::Envelope::kStats:
  case wire::Envelope::kFinal:
    onStats(link, e);
    break;
  default:
    break;
  }
}

void RunLoop::onStats(WorkerLink& link, const wire::Envelope& e) {
  const auto& stats = e.has_stats() ? e.stats() : e.final().stats();
  if (link.final_received)
    return;
  if (!common::statsFromWire(stats, run_.scenario.step_table.size(), progress_.interval())) {
    ++result_.dropped_messages;
    return;
  }
  const auto cut = cutTime(stats, run_.t0, run_.clock.now());
  if (queue_accounting_.any()) {
    const auto added = queue_accounting_.add(stats, cut);
    if (added.malformed)
      ++result_.dropped_messages;
    if (added.first)
      onQueueDuplicate(link, *added.first, added.duplicates, cut);
  }
  rows_.add(link.index, cut, stats);
  if (run_.capacity && !e.has_final())
    run_.capacity->onStats(link, cut, stats);
  progress_.divergence().add(link.index, stats);
  for (const auto& step : stats.steps()) {
    link.requests += step.requests();
    link.errors += step.errors();
  }
  link.active_users = stats.active_users();
  notePositions(link, stats);
  link.error_tally = std::max(link.error_tally, link.errors);
  checkErrorCount();
  if (!e.has_final())
    return;
  link.final_received = true;
  link.final_at = run_.clock.now();
  if (e.final().has_sent_after_first_error()) {
    const auto& sent = e.final().sent_after_first_error();
    link.sent_after_first_error = sent.requests();
    link.sent_count_complete = sent.complete();
    if (sent.has_last_send_master_ns())
      link.last_send = common::fromSteadyNs(sent.last_send_master_ns());
  }
  link.state = LinkState::Done;
  if (e.final().leaving() && !stop_sent_) {
    noteLeft(link, seconds(link.final_at - run_.t0));
    rejoin_.onLeft(link, link.final_at);
    sendHalt(policy_.onWorkerLeft(), link.final_at);
  }
  wire::Envelope ack;
  ack.mutable_final_ack();
  run_.cluster.send(link, ack);
}

// A message taken twice from a queue, found as a worker's part met the others': the run's
// error like any other (the first halts).
void RunLoop::onQueueDuplicate(const WorkerLink& link, const QueueAccounting::Duplicate& d,
                               uint64_t n, SteadyTime at) {
  common::ErrorContext error;
  error.worker_index = link.index;
  error.step = run_.scenario.step_table[d.step].name;
  error.method = "SUBSCRIBE";
  error.url = d.queue;
  error.error_kind = "message_duplicate";
  error.detail = fmt::format(
      "message {} of producer {} on {} was consumed twice{}", d.seq, d.producer, d.queue,
      n > 1 ? fmt::format(" ({} duplicates in worker {}'s part)", n, link.index) : "");
  error.at = at;
  error.wall_at = std::chrono::system_clock::now();
  sendHalt(policy_.onError(std::move(error), false, link.index, seconds(at - run_.t0)),
           run_.clock.now());
}

// The end: every confirmed message nobody took is lost, once every worker's last part is in.
void RunLoop::judgeQueues(SteadyTime end) {
  if (!queue_accounting_.any())
    return;
  for (const auto* link : run_.joined) {
    if (link->state == LinkState::Lost) {
      warn(fmt::format("{} was lost: what its consumers took from queues is partly unknown, so "
                       "no message on a queue is judged lost",
                       workerLabel(*link)));
      return;
    }
  }
  // The consumers stopped at the end of the load, or at the halt.
  SteadyTime stopped = std::min(end, run_.end_at);
  if (halt_sent_at_)
    stopped = std::min(stopped, *halt_sent_at_);
  queue_figures_ = queue_accounting_.judge(stopped);
  for (const auto& [step, f] : queue_figures_) {
    if (f.lost == 0 || queue_loss_)
      continue;
    common::ErrorContext error;
    error.step = run_.scenario.step_table[step].name;
    error.method = "SUBSCRIBE";
    error.error_kind = "message_lost";
    error.detail = fmt::format("{} confirmed message{} never consumed though later ones of "
                               "their producers were, first {} (those confirmed in the last {} "
                               "s before the consumers stopped are not judged)",
                               f.lost, f.lost == 1 ? " was" : "s were", f.example,
                               QueueAccounting::kLossGrace.count());
    error.at = end;
    error.wall_at = std::chrono::system_clock::now();
    queue_loss_ = std::move(error);
  }
}

void RunLoop::checkSilent(SteadyTime now) {
  for (auto* link : run_.joined) {
    if (link->state == LinkState::Running && now - link->last_heard > run_.cli.heartbeat_timeout) {
      link->state = LinkState::Lost;
      link->why = fmt::format("silent for {:.1f}s", seconds(now - link->last_heard));
      fmt::print(stderr, "\n{}: lost: {}\n", workerLabel(*link), link->why);
      auto& lost = lost_workers_[link] =
          estimateLost(*link, rows_.pace(link->index), run_.t0, now, run_.end_at);
      warn(describeLost(*link, lost));
      // Best effort: a worker that was only frozen stops at once when it wakes up.
      wire::Envelope halt;
      halt.mutable_halt()->set_reason(wire::HALT_REASON_LOST);
      run_.cluster.send(*link, halt);
      sendHalt(policy_.onWorkerLost(seconds(now - run_.t0)), now);
      rejoin_.onLost(*link, now);
    }
  }
}

void RunLoop::tick(SteadyTime now) {
  const auto t0 = run_.t0;
  // One each: every worker gets its own clock model (master/cluster.h).
  for (auto* link : run_.joined)
    if (link->state == LinkState::Running)
      run_.cluster.sendHeartbeat(*link);
  int users = 0;
  int alive = 0;
  for (auto* link : run_.joined) {
    if (link->state == LinkState::Running) {
      users += link->active_users;
      ++alive;
    }
  }
  if (now >= t0) {
    judge_.addInterval(progress_.interval(), seconds(now - last_tick_));
    if (auto breach = judge_.abortBreach())
      sendHalt(policy_.onThresholdBreach(breach->threshold->expr, breach->value, seconds(now - t0)),
               now);
    else if (auto rate = judge_.errorRateBreach())
      sendHalt(policy_.onErrorRate(*rate, seconds(now - t0)), now);
  }
  if (now >= t0) {
    progress_.tick(seconds(now - t0), seconds(now - last_tick_), users, alive,
                   static_cast<int>(run_.cluster.links().size()), rejoin_.takeNews());
    publishRunMetrics(run_, progress_, seconds(now - t0), users);
  }
  std::vector<uint32_t> reporting;
  for (auto* link : run_.joined)
    if (link->state == LinkState::Running)
      reporting.push_back(link->index);
  writeRows(rows_.take(now, reporting));
  last_tick_ = std::max(now, t0);
  next_tick_ = now + kTickInterval;
}

bool RunLoop::running() const {
  return std::any_of(run_.joined.begin(), run_.joined.end(),
                     [](auto* l) { return l->state == LinkState::Running; }) ||
         (!stop_sent_ && !policy_.halt() && rejoin_.waiting(run_.clock.now()));
}

void RunLoop::run() {
  openOutputs();
  auto& cluster = run_.cluster;
  for (auto& [link, e] : run_.early_errors) // the start barrier's, before anything else
    onMessage(*link, e);
  while (running()) {
    cluster.poll(kRunPoll,
                 [this](WorkerLink& link, const wire::Envelope& e) { onMessage(link, e); });
    const auto now = run_.clock.now();
    if (interrupted())
      sendHalt(policy_.onInterrupted(seconds(now - run_.t0)), now);
    if (interruptedTwice())
      exitNow(cluster);
    // The master ends the run; workers also stop by themselves at the same time.
    if (now >= run_.end_at && !stop_sent_) {
      wire::Envelope stop;
      stop.mutable_stop();
      cluster.broadcast(stop, {LinkState::Running});
      stop_sent_ = true;
    }
    checkSilent(now);
    if (run_.capacity && !policy_.halt())
      run_.capacity->poll(now); // may end the run: end_at
    if (!stop_sent_ && !policy_.halt())
      rejoin_.probe(now);
    if (now >= next_tick_)
      tick(now);
  }
}

SteadyTime RunLoop::end() {
  const auto t0 = run_.t0;
  const auto end = run_.clock.now();
  judge_.addInterval(progress_.interval(), seconds(end - last_tick_));
  progress_.tick(seconds(end - t0), seconds(end - last_tick_), 0, 0,
                 static_cast<int>(run_.cluster.links().size()));
  progress_.end();
  writeRows(rows_.finish());
  judgeQueues(end);
  return end;
}

} // namespace stampede::master
