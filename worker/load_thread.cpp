#include "worker/load_thread.h"

#include "worker/virtual_user.h"

#include <algorithm>

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
    client_ = makeBeastClient(io_, http, allow);
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
  const double phase = double(e.options_.worker_index % std::max(1u, e.options_.worker_count)) /
                       double(std::max(1u, e.options_.worker_count));
  uint64_t next_vu = 0;
  for (uint64_t k = uint64_t(index_);; k += step) {
    const auto offset = group.curve->timeOfArrival(double(k) + phase);
    if (!offset)
      break;
    const common::SteadyTime at = e.t0_ + *offset;
    if (at >= e.end_ || e.stopping() || e.data_stopped_.load(std::memory_order_acquire))
      break;
    if (at < e.join_at_)
      continue; // before this worker rejoined the run: the lost worker's, not ours to catch up
    if (e.clock_.now() < at) {
      pool.timer.expires_at(std::chrono::steady_clock::time_point(at));
      boost::system::error_code ec;
      co_await pool.timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (e.stopping() || e.data_stopped_.load(std::memory_order_acquire))
        break;
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
    asio::co_spawn(io_, user->arrival(flow, at),
                   [this](std::exception_ptr error) { onEscape(error); });
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
        asio::co_spawn(io_, engine_.stepped_ ? probeArrivals() : arrivals(group->index), on_escape);
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
