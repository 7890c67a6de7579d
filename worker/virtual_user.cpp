#include "worker/virtual_user.h"

#include "worker/feeders.h"
#include "worker/response_judge.h"

#include <algorithm>

namespace stampede::worker {
namespace {

using common::Flow;
using common::Step;
using common::ThinkTime;
using std::chrono::microseconds;

// Loop levels an iteration keeps in its coroutine frame; deeper nesting (the loader allows 16)
// spills to the heap. Most flows nest a loop or two.
constexpr size_t kLoopStackDepth = 4;

microseconds drawThink(const ThinkTime& think, std::mt19937_64& rng) {
  switch (think.kind) {
  case ThinkTime::Kind::None:
    return microseconds(0);
  case ThinkTime::Kind::Fixed:
    return think.a;
  case ThinkTime::Kind::Uniform: {
    std::uniform_int_distribution<int64_t> pick(think.a.count(), think.b.count());
    return microseconds(pick(rng));
  }
  case ThinkTime::Kind::Exponential: {
    std::exponential_distribution<double> pick(1.0 / double(std::max<int64_t>(1, think.a.count())));
    return microseconds(static_cast<int64_t>(pick(rng)));
  }
  }
  return microseconds(0);
}

} // namespace

VirtualUser::VirtualUser(WorkerThread& thread, uint64_t vu, size_t group)
    : thread(thread), engine(thread.engine_), vu(vu), group(*engine.groups_[group]),
      session(thread.client_->newSession()), timer(thread.io_),
      slots(engine.scenario_->slots.size()) {
  ctx.vu = vu;
  ctx.worker_index = engine.options_.worker_index;
  ctx.rng = &thread.rng_;
  ctx.slots = slots.data();
}

asio::awaitable<void> VirtualUser::run() {
  while (mayStart() && !retired) {
    if (!wanted()) {
      // Parked: ramped down, or not yet ramped up. Sleep until the curve wants us again.
      const auto next =
          group.curve->nextTimeAbove(rank(), std::max(microseconds(0), engine.sinceStart()));
      if (!next || engine.t0_ + *next >= engine.end_)
        break;
      timer.expires_at(std::chrono::steady_clock::time_point(engine.t0_ + *next));
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (!engine.takeIteration(group))
      break;
    engine.active_users_.fetch_add(1, std::memory_order_relaxed);
    const Flow& flow = pickFlow();
    bool go_on = false;
    bool failed = false;
    in_iteration = true;
    try {
      go_on = co_await iterate(flow, std::nullopt);
    } catch (...) {
      go_on = fail(flow, std::current_exception());
      failed = true;
    }
    in_iteration = false;
    engine.active_users_.fetch_sub(1, std::memory_order_relaxed);
    ++ctx.iteration;
    if (!go_on)
      break;
    if (failed) // let the thread's other users and a halt in before the next iteration
      co_await asio::post(thread.io_, asio::use_awaitable);
  }
  if (messaging)
    co_await closeMessaging();
}

asio::awaitable<void> VirtualUser::arrival(const Flow& flow, common::SteadyTime scheduled) {
  engine.active_users_.fetch_add(1, std::memory_order_relaxed);
  // Every arrival is a new visitor: nothing captured by the previous one is visible.
  for (auto& slot : slots)
    slot.clear();
  bool go_on = false;
  bool usable = true;
  try {
    go_on = co_await iterate(flow, scheduled);
  } catch (...) {
    // Not a feeder that ran out: the arrivals go on, and this user with them if it can.
    usable = fail(flow, std::current_exception());
    go_on = true;
  }
  ++ctx.iteration;
  engine.active_users_.fetch_sub(1, std::memory_order_relaxed);
  if (!go_on && !engine.stopping())
    engine.data_stopped_.store(true, std::memory_order_release);
  auto& pool = *thread.pools_[group.index];
  --pool.in_flight;
  if (usable)
    pool.idle.push_back(this);
  if (pool.ended && messaging)
    co_await closeMessaging(); // the last arrival of the run: see WorkerThread::endPool
}

asio::awaitable<bool> VirtualUser::iterate(const Flow& flow,
                                           std::optional<common::SteadyTime> scheduled) {
  current_step = nullptr;
  if (!drawData(flow))
    co_return false;
  const bool closed = !scheduled.has_value();
  // Loops are walked with a stack of positions, not by recursion: a coroutine frame per step
  // is measurable at the rates we run.
  struct Position {
    const std::vector<Step>* steps;
    size_t next;
    int rounds_left;
  };
  Position stack[kLoopStackDepth];
  size_t depth = 0;
  std::vector<Position> deep; // loops nested deeper than the stack above (rare)
  auto top = [&]() -> Position& { return deep.empty() ? stack[depth - 1] : deep.back(); };
  auto push = [&](Position p) {
    if (depth < std::size(stack) && deep.empty())
      stack[depth++] = p;
    else
      deep.push_back(p);
  };
  auto pop = [&] {
    if (!deep.empty())
      deep.pop_back();
    else
      --depth;
  };
  push(Position{&flow.steps, 0, 1});
  // Closed model: run() asked wanted() just before this iteration, so the first step that would
  // ask again need not; every step that waits clears it.
  bool wanted_now = closed;
  bool go_on = true;
  while (go_on && (depth > 0 || !deep.empty())) {
    Position& at = top();
    if (at.next == at.steps->size()) {
      if (--at.rounds_left > 0)
        at.next = 0;
      else
        pop();
      continue;
    }
    const Step& step = (*at.steps)[at.next++];
    switch (step.kind) {
    case Step::Kind::Request: {
      // Ramp-down: a user the curve no longer wants finishes the step it is in, not the flow.
      if (closed && !std::exchange(wanted_now, false) && !wanted())
        co_return mayStart();
      current_step = &step;
      redirects = 0;
      go_on = beginRequest(step);
      while (go_on) {
        if (session->start(rendered.req, response, request_wait)) {
          co_await request_wait.suspend();
          request_wait.rethrowIfFailed();
        } else {
          co_await session->perform(rendered.req, response);
        }
        if (engine.scenario_->http.follow_redirects && response.error == TransportError::None &&
            isRedirect(response.status) && redirects < common::kMaxRedirects) {
          if (auto location = session->header("Location")) {
            ++redirects;
            // Every hop is a request on the wire, and counted as one of this step.
            const auto done = engine.clock_.now();
            thread.record(step.stats_index, response,
                          WorkerThread::Sample{common::microsBetween(sent, done)}, nullptr);
            go_on = beginRedirect(*location);
            continue;
          }
        }
        go_on = endRequest(flow, step, scheduled);
        break;
      }
      scheduled.reset(); // later requests of the iteration are timed from their send
      if (go_on && flow.think.kind != ThinkTime::Kind::None)
        go_on = co_await pause(drawThink(flow.think, thread.rng_));
      break;
    }
    case Step::Kind::Think:
      wanted_now = false;
      go_on = co_await pause(drawThink(step.think, thread.rng_));
      break;
    case Step::Kind::Publish:
      if (closed && !std::exchange(wanted_now, false) && !wanted())
        co_return mayStart();
      current_step = &step;
      go_on = co_await publishStep(flow, step, scheduled);
      scheduled.reset();
      break;
    case Step::Kind::Subscribe:
      wanted_now = false;
      current_step = &step;
      go_on = co_await subscribeStep(flow, step);
      break;
    case Step::Kind::Loop:
      if (step.loop_count > 0)
        push(Position{&step.steps, 0, step.loop_count});
      break;
    }
  }
  co_return go_on;
}

bool VirtualUser::drawData(const Flow& flow) {
  const auto& data = engine.scenario_->data;
  for (uint32_t f : flow.feeders) {
    const auto row = engine.feeders_->drawRow(f, thread.rng_);
    const auto& feeder = data[f];
    if (!row) {
      if (feeder.on_exhausted == common::Feeder::OnExhausted::Halt) {
        ErrorContext context;
        context.worker_index = engine.options_.worker_index;
        context.vu = vu;
        context.flow = flow.name;
        context.error_kind = "data_exhausted";
        context.detail = "data feeder '" + feeder.name + "' (" + feeder.file + ") ran out of rows";
        context.at = engine.clock_.now();
        context.wall_at = std::chrono::system_clock::now();
        context.data_exhausted = true;
        engine.reportError(std::move(context));
      }
      return false;
    }
    const auto& values = feeder.rows[*row];
    for (size_t c = 0; c < feeder.slots.size() && c < values.size(); ++c)
      slots[feeder.slots[c]].assign(values[c]);
  }
  return true;
}

asio::awaitable<bool> VirtualUser::pause(microseconds d) {
  if (d.count() <= 0)
    co_return mayStart();
  auto wake = engine.clock_.now() + d;
  if (wake >= engine.end_)
    wake = engine.end_;
  timer.expires_at(std::chrono::steady_clock::time_point(wake));
  boost::system::error_code ec;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return mayStart();
}

bool VirtualUser::beginRequest(const Step& step) {
  rendered.render(*engine.scenario_, engine.inherited_headers_.at(&step), step, ctx);
  return stampSend();
}

bool VirtualUser::stampSend() {
  sent = engine.clock_.now();
  if (engine.stopping() || sent >= engine.end_)
    return false;
  if (engine.masterSilentAt(sent)) {
    // The master's heartbeat timeout has passed (say, after SIGSTOP): the control thread is
    // about to drop the run, and nothing may reach the target before it has judged.
    engine.halt();
    return false;
  }
  // Logged once it is sure to go out: the worker counts these against the first error's
  // moment when it learns it (Engine::sendsFrom).
  thread.sends_.record(toNs(sent));
  return true;
}

bool VirtualUser::beginRedirect(std::string_view location) {
  rendered.redirect(location, response.status);
  return stampSend();
}

bool VirtualUser::endRequest(const Flow& flow, const Step& step,
                             std::optional<common::SteadyTime> scheduled) {
  const auto done = engine.clock_.now();
  if (response.error == TransportError::Cancelled) {
    thread.recordCancelled(step.stats_index);
    return false;
  }
  const int64_t service_us = common::microsBetween(sent, done);
  const char* kind = nullptr;
  if (response.error != TransportError::None) {
    kind = errorKindName(response.error);
    detail = response.detail;
  } else {
    kind = judge(step, *engine.json_expectations_, response, *session, service_us, slots,
                 error_kind, detail);
  }
  if (kind != nullptr && kind != error_kind.c_str())
    error_kind.assign(kind);
  WorkerThread::Sample sample{service_us};
  if (group.open) {
    sample.service_us = service_us;
    if (scheduled) {
      sample.latency_us = common::microsBetween(*scheduled, done);
      sample.lag_us = common::microsBetween(*scheduled, sent);
    }
  }
  thread.record(step.stats_index, response, sample, kind ? &error_kind : nullptr);
  if (kind) {
    engine.noteError();
    reportError(flow, step, error_kind, done);
    if (engine.halted())
      return false;
  }
  return true;
}

ErrorContext VirtualUser::errorContext(const Flow& flow, const Step* step) const {
  ErrorContext context;
  context.worker_index = engine.options_.worker_index;
  context.vu = vu;
  context.flow = flow.name;
  if (step)
    context.step = engine.scenario_->step_table[step->stats_index].name;
  return context;
}

void VirtualUser::reportError(const Flow& flow, const Step& step, const std::string& kind,
                              common::SteadyTime done) {
  if (engine.first_error_taken_.exchange(true, std::memory_order_acq_rel))
    return;
  ErrorContext context = errorContext(flow, &step);
  context.method = std::string(rendered.req.method);
  context.url = rendered.describeUrl(*engine.scenario_, step, ctx, redirects);
  context.status = response.status;
  context.error_kind = kind;
  context.detail = detail;
  // A body over http.max_body came with a complete head: say what the target answered.
  if (response.error == TransportError::None || response.error == TransportError::BodyTooLarge)
    context.headers = session->lastResponseHeaders();
  context.body.assign(response.body.substr(0, kBodyExcerptBytes));
  context.at = done;
  context.wall_at = std::chrono::system_clock::now();
  engine.reportError(std::move(context));
}

bool VirtualUser::fail(const Flow& flow, std::exception_ptr error) {
  const auto done = engine.clock_.now();
  const Step* step = current_step;
  const size_t stats_index = step ? step->stats_index : flow.first_request_stats_index;
  error_kind.assign("internal");
  thread.record(
      stats_index, HttpResponse{},
      WorkerThread::Sample{step ? std::max<int64_t>(0, common::microsBetween(sent, done)) : 0},
      &error_kind);
  engine.noteError();
  if (!engine.first_error_taken_.exchange(true, std::memory_order_acq_rel)) {
    ErrorContext context = errorContext(flow, step);
    if (step)
      context.method = std::string(step->method);
    context.error_kind = error_kind;
    context.detail =
        "the virtual user's iteration stopped on an exception: " + describeException(error);
    context.at = done;
    context.wall_at = std::chrono::system_clock::now();
    engine.reportError(std::move(context));
  }
  // The old session may be mid-request: its destructor settles what it had in flight.
  session.reset();
  try {
    session = thread.client_->newSession();
  } catch (...) {
    return false;
  }
  return true;
}

} // namespace stampede::worker
