#include "worker/engine.h"

#include "common/load_plan.h"
#include "worker/feeders.h"
#include "worker/load_thread.h"
#include "worker/request_render.h"
#include "worker/response_judge.h"
#include "worker/virtual_user.h"

#include <algorithm>
#include <ctime>
#include <pthread.h>
#include <thread>

namespace stampede::worker {

using common::Flow;

Engine::Engine(std::shared_ptr<const common::Scenario> scenario, EngineOptions options,
               const common::Clock& clock)
    : scenario_(std::move(scenario)), options_(std::move(options)), clock_(clock),
      timer_clock_(dynamic_cast<const common::SteadyClock*>(&clock) ? nullptr : &clock) {
  stepped_ = scenario_->capacity.has_value();
  if (options_.threads <= 0)
    options_.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  uint64_t units = 0; // users and in-flight slots of every group
  group_specs_ = common::loadGroupsOf(*scenario_);
  for (size_t g = 0; g < group_specs_.size(); ++g) {
    const common::LoadGroup& spec = group_specs_[g];
    const auto& load = spec.load;
    GroupShare share;
    if (g == 0)
      share = GroupShare{options_.cluster_users, options_.rate_share, options_.max_in_flight,
                         options_.first_vu, options_.iterations};
    else if (g - 1 < options_.other_groups.size())
      share = options_.other_groups[g - 1];
    auto group = std::make_unique<Group>();
    group->index = g;
    group->spec = &spec;
    group->open = spec.open();
    if (share.cluster_users) {
      group->cluster_users = std::move(*share.cluster_users);
    } else if (!group->open) {
      group->cluster_users.resize(size_t(std::max(0, load.users)));
      for (size_t i = 0; i < group->cluster_users.size(); ++i)
        group->cluster_users[i] = i;
    }
    group->rate_share = share.rate_share;
    group->max_in_flight = share.max_in_flight.value_or(
        load.max_in_flight ? load.max_in_flight : common::kDefaultMaxInFlight);
    group->first_vu = share.first_vu.value_or(spec.first_vu);
    group->iterations = share.iterations.value_or(load.iterations);
    group->iterations_left.store(int64_t(group->iterations));
    group->curve =
        std::make_unique<common::LoadCurve>(load.stages, group->open ? group->rate_share : 1.0);
    for (size_t f : spec.flows)
      group->weight_total += scenario_->flows[f].weight;
    units += group->open ? group->max_in_flight : group->cluster_users.size();
    groups_.push_back(std::move(group));
  }
  // Never more threads than users (or in-flight slots): an idle thread would only cost memory.
  options_.threads = int(std::max<uint64_t>(1, std::min<uint64_t>(options_.threads, units)));
  for (const auto& flow : scenario_->flows)
    collectInherited(scenario_->http, flow.steps, inherited_headers_);
  feeders_ =
      std::make_unique<Feeders>(scenario_->data, options_.feeder_start, options_.shuffle_seed);
  json_expectations_ = std::make_unique<const JsonExpectations>(*scenario_);
  for (int i = 0; i < options_.threads; ++i)
    threads_.push_back(std::make_unique<WorkerThread>(*this, i));
  for (const auto& group : groups_) {
    const uint64_t cap = group->open ? group->max_in_flight : 0;
    for (size_t i = 0; i < threads_.size(); ++i)
      threads_[i]->pools_[group->index]->cap =
          cap / threads_.size() + (i < cap % threads_.size() ? 1 : 0);
  }
}

Engine::~Engine() {
  halt();
  join();
}

void Engine::setErrorListener(std::function<void(const ErrorContext&)> listener) {
  error_listener_ = std::move(listener);
}

const Flow& Engine::pickFlow(const Group& group, std::mt19937_64& rng) const {
  const auto& flows = scenario_->flows;
  const auto& mine = group.spec->flows;
  if (mine.size() == 1)
    return flows[mine[0]];
  std::uniform_real_distribution<double> pick(0.0, group.weight_total);
  double x = pick(rng);
  for (size_t f : mine) {
    if (x < flows[f].weight)
      return flows[f];
    x -= flows[f].weight;
  }
  return flows[mine.back()];
}

bool Engine::takeIteration(Group& group) {
  if (group.iterations == 0)
    return true;
  return group.iterations_left.fetch_sub(1, std::memory_order_relaxed) > 0;
}

void Engine::start(common::SteadyTime t0, std::optional<common::SteadyTime> join_at) {
  t0_ = t0;
  join_at_ = std::max(t0, join_at.value_or(t0));
  std::chrono::microseconds longest{0};
  for (const auto& group : groups_)
    longest = std::max(longest, group->curve->total());
  end_ = t0 + longest;
  addUsers();
  if (subscribing_first_) {
    // The threads run already (subscribeFirst): the load starts on them, after the posts.
    for (auto& t : threads_)
      asio::post(t->io_, [raw = t.get()] { raw->spawnLoad(); });
    return;
  }
  running_threads_.store(static_cast<int>(threads_.size()), std::memory_order_release);
  busy_cpu_ = std::chrono::nanoseconds(0); // new threads: no CPU time yet
  busy_at_ = std::chrono::steady_clock::now();
  for (auto& t : threads_)
    t->thread_ = std::thread([raw = t.get()] { raw->run(); });
}

void Engine::addUsers() {
  if (users_added_)
    return;
  users_added_ = true;
  size_t next = 0; // closed users of every group, dealt over the threads in turn
  for (const auto& group : groups_) {
    if (group->open)
      continue;
    for (uint64_t c : group->cluster_users)
      threads_[next++ % threads_.size()]->addUser(group->spec->first_vu + c, group->index);
  }
}

void Engine::subscribeFirst(std::function<void()> progress) {
  subscribed_listener_ = std::move(progress);
  addUsers();
  uint64_t expected = 0;
  for (const auto& t : threads_)
    for (const auto& user : t->users_)
      if (const Flow* flow = common::lifeFlow(*scenario_, *user->group.spec, user->vu))
        expected += common::countSteps(flow->steps, common::Step::Kind::Subscribe);
  subscriptions_expected_ = expected;
  subscribing_first_ = true;
  running_threads_.store(static_cast<int>(threads_.size()), std::memory_order_release);
  busy_cpu_ = std::chrono::nanoseconds(0);
  busy_at_ = std::chrono::steady_clock::now();
  for (auto& t : threads_)
    t->thread_ = std::thread([raw = t.get()] { raw->run(); });
}

void Engine::halt() noexcept {
  if (halted_.exchange(true, std::memory_order_acq_rel))
    return;
  for (auto& t : threads_)
    asio::post(t->io_, [raw = t.get()] { raw->cancelAll(true); });
}

void Engine::finish() noexcept {
  if (finishing_.exchange(true, std::memory_order_acq_rel))
    return;
  for (auto& t : threads_)
    asio::post(t->io_, [raw = t.get()] { raw->cancelAll(false); });
}

void Engine::join() {
  for (auto& t : threads_)
    if (t->thread_.joinable())
      t->thread_.join();
}

SendLog::Count Engine::sendsFrom(common::SteadyTime from) const {
  SendLog::Count all;
  for (const auto& t : threads_) {
    const auto c = t->sends_.countFrom(toNs(from));
    all.sent += c.sent;
    if (c.last_ns && (!all.last_ns || *c.last_ns > *all.last_ns))
      all.last_ns = c.last_ns;
    all.complete = all.complete && c.complete;
  }
  return all;
}

void Engine::reportError(ErrorContext context) {
  // Stop locally first, before anyone hears of it: from here on no request of this worker
  // passes the stop check (one already past it goes out, and is counted in the Final).
  const bool halts =
      context.data_exhausted || scenario_->halt.on_error == common::HaltSpec::OnError::First;
  if (halts)
    halt();
  errors_handed_over_.offer(context);
  if (error_listener_)
    error_listener_(context);
}

void Engine::setFinishedListener(std::function<void()> listener) {
  finished_listener_ = std::move(listener);
}

void Engine::setErrorTick(std::function<void()> tick, uint64_t limit) {
  error_tick_ = std::move(tick);
  error_tick_limit_ = limit;
}

void Engine::noteError() {
  auto n = errors_.fetch_add(1, std::memory_order_relaxed) + 1;
  if (error_tick_ && n <= error_tick_limit_)
    error_tick_();
}

void Engine::setRate(double rate, common::SteadyTime from, common::SteadyTime to) {
  // Far above what a worker can start; a master asking more is broken, and a probe must end.
  constexpr double kMaxRatePerWorker = 1e7;
  rate = std::min(rate, kMaxRatePerWorker);
  {
    std::lock_guard lock(rate_mutex_);
    rate_segments_.push_back(RateSegment{from, to, rate});
    rate_segment_count_.store(rate_segments_.size(), std::memory_order_release);
  }
  // A thread idle between probes sleeps until the end of the run: wake it to the new rate.
  for (auto& t : threads_)
    asio::post(t->io_, [raw = t.get()] { raw->pools_[0]->timer.cancel(); });
}

void Engine::reshare(double rate_share, uint64_t max_in_flight, uint32_t worker_count,
                     common::SteadyTime from, const std::vector<uint64_t>& retire,
                     const std::vector<uint64_t>& keep_rows) {
  for (size_t f = 0; f < keep_rows.size(); ++f)
    feeders_->keepRows(f, keep_rows[f]);
  std::shared_ptr<const common::LoadCurve> curve;
  double phase = 0;
  // Group 0 only: a run with per-flow loads is never re-planned (master/replan).
  if (groups_.front()->open) {
    curve =
        std::make_shared<const common::LoadCurve>(groups_.front()->spec->load.stages, rate_share);
    worker_count = std::max(1u, worker_count);
    phase = double(options_.worker_index % worker_count) / double(worker_count);
  }
  for (size_t i = 0; i < threads_.size(); ++i) {
    WorkerThread::Schedule schedule{.curve = curve,
                                    .phase = phase,
                                    .from = from,
                                    .in_flight_cap = max_in_flight / threads_.size() +
                                                     (i < max_in_flight % threads_.size() ? 1 : 0)};
    asio::post(threads_[i]->io_,
               [raw = threads_[i].get(), schedule, retire] { raw->reshare(schedule, retire); });
  }
}

std::vector<uint64_t> Engine::feederPositions() const {
  return feeders_->positions();
}

double Engine::loadBusy() {
  std::chrono::nanoseconds cpu{0};
  for (auto& t : threads_) {
    clockid_t id;
    timespec ts{};
    if (t->thread_.joinable() && pthread_getcpuclockid(t->thread_.native_handle(), &id) == 0 &&
        clock_gettime(id, &ts) == 0)
      cpu += std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
  }
  const auto now = std::chrono::steady_clock::now(); // CPU time is real time, whatever the clock
  double busy = 0;
  if (busy_at_ && now > *busy_at_ && cpu >= busy_cpu_ && !threads_.empty())
    busy = std::chrono::duration<double>(cpu - busy_cpu_).count() /
           (std::chrono::duration<double>(now - *busy_at_).count() * double(threads_.size()));
  busy_cpu_ = cpu;
  busy_at_ = now;
  return std::min(1.0, busy);
}

void Engine::rearmFirstError() {
  errors_handed_over_.reset();
  first_error_taken_.store(false, std::memory_order_release);
}

void Engine::collect(common::StatsBook& into) {
  for (auto& t : threads_)
    t->collect(into);
}

} // namespace stampede::worker
