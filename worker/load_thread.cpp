#include "worker/load_thread.h"

#include "common/text.h"
#include "worker/virtual_user.h"

#include <algorithm>
#include <cmath>

namespace stampede::worker {

using common::Flow;

std::string describeException(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

namespace {

// Whether a request of the scenario may go to an https URL: its target, or a step's absolute
// URL that does not plainly begin with http:// (its scheme may come from a variable).
bool namesHttps(const std::vector<common::Step>& steps) {
  for (const auto& step : steps) {
    if (step.kind == common::Step::Kind::Loop && namesHttps(step.steps))
      return true;
    if (step.kind == common::Step::Kind::Request && step.url_absolute &&
        !common::iequalsPrefix(step.url.source(), "http://"))
      return true;
  }
  return false;
}

bool namesHttps(const common::Scenario& scenario) {
  if (scenario.target.tls())
    return true;
  for (const auto& flow : scenario.flows)
    if (namesHttps(flow.steps))
      return true;
  return false;
}

} // namespace

WorkerThread::WorkerThread(Engine& engine, int index)
    : engine_(engine), index_(index), rng_(std::random_device{}() ^ (uint64_t(index) << 32)),
      stats_(engine.scenario_->step_table.size()) {
  const auto& http = engine.scenario_->http;
  const auto& allow = engine.options_.allow_target;
  if (engine.options_.client_factory)
    client_ = engine.options_.client_factory(io_, http);
  else if (http.engine == common::HttpSpec::Engine::Curl)
    client_ = makeCurlClient(io_, http, allow);
  else if (http.engine == common::HttpSpec::Engine::Nghttp2)
    client_ = makeH2Client(io_, http, allow);
  else
    client_ = makeBeastClient(io_, http, allow, !namesHttps(*engine.scenario_));
  for (size_t g = 0; g < engine.groups_.size(); ++g)
    pools_.push_back(std::make_unique<ArrivalPool>(io_));
}

WorkerThread::~WorkerThread() = default;

void WorkerThread::addUser(uint64_t vu, size_t group) {
  users_.push_back(std::make_unique<VirtualUser>(*this, vu, group));
}

asio::awaitable<void> WorkerThread::arrivals(size_t group_index) {
  Engine& e = engine_;
  Engine::Group& group = *e.groups_[group_index];
  ArrivalPool& pool = *pools_[group_index];
  const uint64_t step = e.threads_.size();
  const common::LoadCurve* curve = group.curve.get();
  double phase = double(e.options_.worker_index % std::max(1u, e.options_.worker_count)) /
                 double(std::max(1u, e.options_.worker_count));
  common::SteadyTime from = e.join_at_;
  uint64_t next_vu = 0;
  // A re-plan (Engine::reshare) due at or before `at`: this thread's arrivals from its time on
  // follow the new share, from the first of them due at or after it. Only group 0: a run with
  // per-flow loads admits no newcomer (master/replan), so is never re-planned.
  auto reshareDue = [&](std::optional<common::SteadyTime> at) {
    return group_index == 0 && next_schedule_ && (!at || *at >= next_schedule_->from);
  };
  // This thread's first arrival k (index, index + step...) due at or after `from`, or one a
  // step before it: straight there rather than through every earlier one (an hour of a soak
  // is millions of them).
  auto firstFrom = [&] {
    const double due = curve->arrivalsBy(
        std::chrono::duration_cast<std::chrono::microseconds>(std::max(from, e.t0_) - e.t0_));
    const auto below = uint64_t(std::max(0.0, std::floor(due - phase)));
    return below / step * step + uint64_t(index_);
  };
  auto takeReshare = [&](uint64_t& k) {
    schedule_ = std::move(*next_schedule_);
    next_schedule_.reset();
    curve = schedule_->curve.get();
    phase = schedule_->phase;
    from = schedule_->from;
    pool.cap = schedule_->in_flight_cap;
    k = firstFrom();
  };
  for (uint64_t k = firstFrom();; k += step) {
    const auto offset = curve->timeOfArrival(double(k) + phase);
    std::optional<common::SteadyTime> at;
    if (offset)
      at = e.t0_ + *offset;
    if (reshareDue(at)) {
      takeReshare(k);
      k -= step; // the loop's step brings it back
      continue;
    }
    if (!at || *at >= e.end_ || e.stopping() || e.data_stopped_.load(std::memory_order_acquire))
      break;
    if (*at < from)
      continue; // before this worker (re)joined or its share changed: not ours to catch up
    bool resharing = false;
    while (e.clock_.now() < *at) {
      pool.timer.expires_at(std::chrono::steady_clock::time_point(*at));
      boost::system::error_code ec;
      co_await pool.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (e.stopping() || e.data_stopped_.load(std::memory_order_acquire))
        co_return;
      if (reshareDue(at)) {
        resharing = true;
        break;
      }
    }
    if (resharing) {
      takeReshare(k);
      k -= step;
      continue;
    }
    const Flow& flow = e.pickFlow(group, rng_);
    if (pool.in_flight >= pool.cap) {
      // Never queued: a late start would hide the wait from the latency figures.
      recordDropped(flow.first_request_stats_index);
      continue;
    }
    // A dropped arrival is not an iteration: only one that starts takes from the budget.
    if (!e.takeIteration(group))
      break;
    VirtualUser* user;
    if (!pool.idle.empty()) {
      user = pool.idle.back();
      pool.idle.pop_back();
    } else {
      // Numbered first_vu + thread + threads * n: unique across the worker's threads, and
      // below first_vu + max_in_flight, the block the master gave this worker.
      const uint64_t vu = group.first_vu + uint64_t(index_) + step * next_vu++;
      users_.push_back(std::make_unique<VirtualUser>(*this, vu, group_index));
      user = users_.back().get();
    }
    ++pool.in_flight;
    asio::co_spawn(io_, user->arrival(flow, *at),
                   [this](std::exception_ptr error) { onEscape(error); });
  }
}

asio::awaitable<void> WorkerThread::runArrivals(size_t group) {
  if (engine_.stepped_)
    co_await probeArrivals();
  else
    co_await arrivals(group);
  endPool(*pools_[group]);
}

void WorkerThread::endPool(ArrivalPool& pool) {
  pool.ended = true;
  for (VirtualUser* user : pool.idle)
    if (user->messaging)
      asio::co_spawn(io_, user->closeMessaging(),
                     [this](std::exception_ptr error) { onEscape(error); });
}

void WorkerThread::reshare(Schedule schedule, const std::vector<uint64_t>& retire) {
  if (schedule.curve) {
    next_schedule_ = std::move(schedule);
    if (!pools_.empty())
      pools_.front()->timer.cancel(); // the wait for the next arrival looks at it
  }
  for (auto& user : users_) {
    if (std::find(retire.begin(), retire.end(), user->vu) == retire.end())
      continue;
    user->retired = true;
    if (!user->in_iteration)
      user->timer.cancel(); // parked: ends now
  }
}

void WorkerThread::run() {
  EngineTimerClock::thread_clock = engine_.timer_clock_;
  auto on_escape = [this](std::exception_ptr error) { onEscape(error); };
  // Nothing may end this thread early and silently: out of memory making the users' frames,
  // or a handler that throws, is reported as an internal error and halts the run (the thread
  // could not carry its share), and the loop goes on until every coroutine has ended.
  auto fail = [this] {
    try {
      onEscape(std::current_exception());
    } catch (...) {
      // Reporting needs memory too; the halt below does not.
    }
    engine_.halt();
  };
  try {
    if (engine_.subscribing_first_) {
      hold_.emplace(io_.get_executor());
      for (auto& user : users_)
        if (common::lifeFlow(*engine_.scenario_, *user->group.spec, user->vu))
          asio::co_spawn(io_, user->subscribeAhead(), on_escape);
    } else {
      spawnLoad();
    }
  } catch (...) {
    fail();
  }
  for (;;) {
    try {
      io_.run();
      break;
    } catch (...) {
      fail();
    }
  }
  // Sessions own sockets of this io_context: release them on this thread.
  pools_.clear();
  users_.clear();
  if (engine_.running_threads_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
      engine_.finished_listener_)
    engine_.finished_listener_();
}

void WorkerThread::spawnLoad() {
  hold_.reset();
  if (engine_.stopping())
    return;
  auto on_escape = [this](std::exception_ptr error) { onEscape(error); };
  try {
    // Closed users were added before (addUser); open groups start their arrivals.
    for (auto& user : users_)
      asio::co_spawn(io_, user->run(), on_escape);
    for (const auto& group : engine_.groups_)
      if (group->open)
        asio::co_spawn(io_, runArrivals(group->index), on_escape);
  } catch (...) {
    onEscape(std::current_exception());
    engine_.halt();
  }
}

void WorkerThread::cancelAll(bool cancel_requests) {
  // Runs on this thread (posted), so it may touch sessions and timers.
  hold_.reset();
  for (auto& pool : pools_)
    pool->timer.cancel();
  for (auto& user : users_) {
    user->timer.cancel();
    if (cancel_requests && user->session)
      user->session->cancel();
    if (cancel_requests && user->messaging)
      user->messaging->cancel();
    else if (user->messaging)
      user->messaging->stopRetrying();
  }
}

void WorkerThread::onEscape(std::exception_ptr error) {
  if (!error)
    return;
  // A virtual user catches what its iterations throw: this is the rest (arrivals(), or the
  // user's own bookkeeping), rarer still. Counted against the first step, reported.
  const std::string kind = "internal";
  const auto& flow = engine_.scenario_->flows.front();
  record(flow.first_request_stats_index, HttpResponse{}, Sample{0}, &kind);
  engine_.noteError();
  if (!engine_.first_error_taken_.exchange(true, std::memory_order_acq_rel)) {
    ErrorContext context;
    context.worker_index = engine_.options_.worker_index;
    context.error_kind = kind;
    context.detail = "a load coroutine stopped on an exception: " + describeException(error);
    context.at = engine_.clock_.now();
    context.wall_at = std::chrono::system_clock::now();
    engine_.reportError(std::move(context));
  }
}

void WorkerThread::recordCancelled(size_t stats_index) {
  stats_.update([&](common::StatsBook& book) { ++book.steps[stats_index].cancelled; });
}

void WorkerThread::recordCount(size_t stats_index, const char* name, uint64_t n) {
  stats_.update([&](common::StatsBook& book) { book.steps[stats_index].counters[name] += n; });
}

void WorkerThread::recordDropped(size_t stats_index) {
  stats_.update([&](common::StatsBook& book) { ++book.steps[stats_index].dropped; });
}

} // namespace stampede::worker
