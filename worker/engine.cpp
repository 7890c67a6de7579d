#include "worker/engine.h"

#include <algorithm>
#include <thread>

namespace stampede::worker {
namespace {

using common::Flow;
using common::Step;
using common::ThinkTime;

constexpr size_t kBodyExcerptBytes = 1024;

bool sameHeaderName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

void collectInherited(const common::HttpSpec& http, const std::vector<Step>& steps,
                      std::unordered_map<const Step*, std::vector<size_t>>& out) {
  for (const Step& step : steps) {
    if (step.kind == Step::Kind::Loop)
      collectInherited(http, step.steps, out);
    if (step.kind != Step::Kind::Request)
      continue;
    auto& list = out[&step];
    for (size_t i = 0; i < http.headers.size(); ++i) {
      bool overridden = false;
      for (const auto& own : step.headers)
        overridden = overridden || sameHeaderName(own.first, http.headers[i].first);
      if (!overridden)
        list.push_back(i);
    }
  }
}

int64_t toNs(common::SteadyTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

std::chrono::microseconds drawThink(const ThinkTime& think, std::mt19937_64& rng) {
  switch (think.kind) {
  case ThinkTime::Kind::None:
    return std::chrono::microseconds(0);
  case ThinkTime::Kind::Fixed:
    return think.a;
  case ThinkTime::Kind::Uniform: {
    std::uniform_int_distribution<int64_t> pick(think.a.count(), think.b.count());
    return std::chrono::microseconds(pick(rng));
  }
  case ThinkTime::Kind::Exponential: {
    std::exponential_distribution<double> pick(1.0 / double(std::max<int64_t>(1, think.a.count())));
    return std::chrono::microseconds(static_cast<int64_t>(pick(rng)));
  }
  }
  return std::chrono::microseconds(0);
}

} // namespace

// One load thread: its own io_context, HTTP client, stats book and virtual users.
class WorkerThread {
public:
  WorkerThread(Engine& engine, int index);
  void addUser(uint64_t vu, common::SteadyTime start_at);
  void run();
  void cancelAll(bool cancel_requests);

  void record(size_t stats_index, const HttpResponse& response, int64_t latency_us,
              const std::string* error_kind);
  void recordCancelled(size_t stats_index);
  void collect(common::StatsBook& into);

  Engine& engine_;
  int index_;
  asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::unique_ptr<HttpClient> client_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<struct VirtualUser>> users_;
  std::mutex stats_mutex_; // taken by this thread per record, by the control thread once a second
  common::StatsBook book_;
  std::thread thread_;
};

// One virtual user: a coroutine with its own connection, buffers and think timer.
struct VirtualUser {
  VirtualUser(WorkerThread& thread, uint64_t vu, common::SteadyTime start_at)
      : thread(thread), engine(thread.engine_), vu(vu), start_at(start_at),
        session(thread.client_->newSession()), timer(thread.io_) {
    ctx.vu = vu;
    ctx.worker_index = engine.options_.worker_index;
    ctx.rng = &thread.rng_;
  }

  asio::awaitable<void> run();
  // A request step in two plain functions around the co_await, not a coroutine of its own: a
  // coroutine frame per request is measurable at the rates we run. beginRequest renders `req`
  // and returns false when the run is over; endRequest records the outcome and returns false
  // when this virtual user must stop.
  bool beginRequest(const Step& step);
  bool endRequest(const Flow& flow, const Step& step);
  asio::awaitable<bool> pause(std::chrono::microseconds d);
  const Flow& pickFlow();
  bool mayStart() const { return !engine.stopping() && engine.clock_.now() < engine.end_; }
  void reportError(const Flow& flow, const Step& step, const HttpRequest& request,
                   const HttpResponse& response, const std::string& kind, common::SteadyTime done);

  WorkerThread& thread;
  Engine& engine;
  uint64_t vu;
  common::SteadyTime start_at;
  std::unique_ptr<HttpSession> session;
  asio::steady_timer timer;
  common::RenderContext ctx;
  std::string target_buf;
  std::string render_buf;
  std::string body_buf;
  HeaderList headers_buf;
  const Step* headers_step = nullptr;       // whose names and constant values headers_buf holds
  std::optional<common::Endpoint> absolute; // an absolute URL's endpoint
  HttpRequest req;
  common::SteadyTime sent{};
  HttpResponse response;
  std::string error_kind;
};

asio::awaitable<void> VirtualUser::run() {
  if (engine.clock_.now() < start_at) {
    timer.expires_at(std::chrono::steady_clock::time_point(start_at));
    boost::system::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  if (!mayStart())
    co_return;
  engine.active_users_.fetch_add(1, std::memory_order_relaxed);
  // Loops are walked with a stack of positions, not by recursion: a coroutine frame per step
  // is measurable at the rates we run.
  struct Position {
    const std::vector<Step>* steps;
    size_t next;
    int rounds_left;
  };
  std::vector<Position> positions;
  bool go_on = true;
  while (go_on && mayStart()) {
    const Flow& flow = pickFlow();
    positions.assign(1, Position{&flow.steps, 0, 1});
    while (go_on && !positions.empty()) {
      Position& at = positions.back();
      if (at.next == at.steps->size()) {
        if (--at.rounds_left > 0)
          at.next = 0;
        else
          positions.pop_back();
        continue;
      }
      const Step& step = (*at.steps)[at.next++];
      switch (step.kind) {
      case Step::Kind::Request:
        go_on = beginRequest(step);
        if (go_on) {
          co_await session->perform(req, response);
          go_on = endRequest(flow, step);
        }
        if (go_on && flow.think.kind != ThinkTime::Kind::None)
          go_on = co_await pause(drawThink(flow.think, thread.rng_));
        break;
      case Step::Kind::Think:
        go_on = co_await pause(drawThink(step.think, thread.rng_));
        break;
      case Step::Kind::Loop:
        if (step.loop_count > 0)
          positions.push_back(Position{&step.steps, 0, step.loop_count});
        break;
      }
    }
    ++ctx.iteration;
  }
  engine.active_users_.fetch_sub(1, std::memory_order_relaxed);
}

const Flow& VirtualUser::pickFlow() {
  const auto& flows = engine.scenario_->flows;
  if (flows.size() == 1)
    return flows[0];
  double total = 0;
  for (const auto& f : flows)
    total += f.weight;
  std::uniform_real_distribution<double> pick(0.0, total);
  double x = pick(thread.rng_);
  for (const auto& f : flows) {
    if (x < f.weight)
      return f;
    x -= f.weight;
  }
  return flows.back();
}

asio::awaitable<bool> VirtualUser::pause(std::chrono::microseconds d) {
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
  const auto& scenario = *engine.scenario_;
  const common::Endpoint* endpoint = &scenario.target;

  render_buf.clear();
  step.url.renderTo(ctx, render_buf);
  target_buf.clear();
  if (step.url_absolute) {
    absolute = common::parseEndpoint(render_buf);
    if (absolute) {
      endpoint = &*absolute;
      // parseEndpoint keeps the path of an absolute URL as its base path.
      target_buf.append(absolute->base_path.empty() ? "/" : absolute->base_path);
    }
  } else {
    target_buf.append(scenario.target.base_path);
    if (render_buf.empty() || render_buf.front() != '/')
      target_buf.push_back('/');
    target_buf.append(render_buf);
  }

  // Names and inherited values change only with the step: copied then, not per request.
  const auto& inherited = engine.inherited_headers_.at(&step);
  if (headers_step != &step) {
    headers_step = &step;
    headers_buf.resize(inherited.size() + step.headers.size());
    size_t h = 0;
    for (size_t i : inherited) {
      headers_buf[h].first.assign(scenario.http.headers[i].first);
      headers_buf[h++].second.assign(scenario.http.headers[i].second);
    }
    for (const auto& header : step.headers)
      headers_buf[h++].first.assign(header.first);
  }
  size_t h = inherited.size();
  for (const auto& header : step.headers) {
    headers_buf[h].second.clear();
    header.second.renderTo(ctx, headers_buf[h++].second);
  }
  body_buf.clear();
  if (step.body)
    step.body->renderTo(ctx, body_buf);

  req.method = step.method;
  req.endpoint = endpoint;
  req.target = target_buf;
  req.headers = &headers_buf;
  req.body = body_buf;
  req.timeout = scenario.http.timeout;

  // Stamp, then check: a halt that lands after the check is stamped after `sent`, so a
  // request counted as started after the halt is one that really slipped through.
  sent = engine.clock_.now();
  if (engine.stopping() || sent >= engine.end_)
    return false;
  if (auto halted_ns = engine.halted_at_ns_.load(std::memory_order_acquire);
      halted_ns != 0 && toNs(sent) > halted_ns)
    engine.started_after_halt_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool VirtualUser::endRequest(const Flow& flow, const Step& step) {
  const auto done = engine.clock_.now();
  if (response.error == TransportError::Cancelled) {
    thread.recordCancelled(step.stats_index);
    return false;
  }
  const std::string* kind = nullptr;
  if (response.error != TransportError::None) {
    error_kind.assign(errorKindName(response.error));
    kind = &error_kind;
  } else if (!step.expect.allows(response.status)) {
    error_kind.assign("http_");
    error_kind.append(std::to_string(response.status));
    kind = &error_kind;
  } else if (step.expect.body_contains &&
             response.body.find(*step.expect.body_contains) == std::string_view::npos) {
    error_kind.assign("expect_body");
    kind = &error_kind;
  }
  thread.record(step.stats_index, response, common::microsBetween(sent, done), kind);
  if (kind) {
    engine.noteError();
    reportError(flow, step, req, response, *kind, done);
    if (engine.halted())
      return false;
  }
  return true;
}

void VirtualUser::reportError(const Flow& flow, const Step& step, const HttpRequest& request,
                              const HttpResponse& response, const std::string& kind,
                              common::SteadyTime done) {
  if (engine.first_error_taken_.exchange(true, std::memory_order_acq_rel))
    return;
  ErrorContext context;
  context.worker_index = engine.options_.worker_index;
  context.vu = vu;
  context.flow = flow.name;
  context.step = engine.scenario_->step_table[step.stats_index].name;
  context.method = step.method;
  const auto& endpoint = *request.endpoint;
  std::string masked_path;
  step.url.renderTo(ctx, masked_path, /*mask_secrets=*/true);
  if (step.url_absolute) {
    context.url = masked_path;
  } else {
    context.url = endpoint.scheme + "://" + endpoint.host + ":" + std::to_string(endpoint.port) +
                  engine.scenario_->target.base_path +
                  (masked_path.empty() || masked_path.front() != '/' ? "/" : "") + masked_path;
  }
  context.status = response.status;
  context.error_kind = kind;
  if (response.error != TransportError::None)
    context.detail = response.detail;
  else if (kind == "expect_body")
    context.detail = "body does not contain \"" + *step.expect.body_contains + "\"";
  else
    context.detail = "status " + std::to_string(response.status) + " not allowed by expect";
  if (response.error == TransportError::None)
    context.headers = session->lastResponseHeaders();
  context.body.assign(response.body.substr(0, kBodyExcerptBytes));
  context.at = done;
  context.wall_at = std::chrono::system_clock::now();
  engine.reportError(std::move(context));
}

WorkerThread::WorkerThread(Engine& engine, int index)
    : engine_(engine), index_(index), rng_(std::random_device{}() ^ (uint64_t(index) << 32)),
      book_(engine.scenario_->step_table.size()) {
  const auto& http = engine.scenario_->http;
  client_ = http.engine == common::HttpSpec::Engine::Curl ? makeCurlClient(io_, http)
                                                          : makeBeastClient(io_, http);
}

void WorkerThread::addUser(uint64_t vu, common::SteadyTime start_at) {
  users_.push_back(std::make_unique<VirtualUser>(*this, vu, start_at));
}

void WorkerThread::run() {
  for (auto& user : users_) {
    asio::co_spawn(io_, user->run(), asio::detached);
  }
  io_.run();
  // Sessions own sockets of this io_context: release them on this thread.
  users_.clear();
  if (engine_.running_threads_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
      engine_.finished_listener_)
    engine_.finished_listener_();
}

void WorkerThread::cancelAll(bool cancel_requests) {
  // Runs on this thread (posted), so it may touch sessions and timers.
  for (auto& user : users_) {
    user->timer.cancel();
    if (cancel_requests)
      user->session->cancel();
  }
}

void WorkerThread::record(size_t stats_index, const HttpResponse& response, int64_t latency_us,
                          const std::string* error_kind) {
  std::lock_guard lock(stats_mutex_);
  auto& s = book_.steps[stats_index];
  ++s.requests;
  s.bytes_in += response.bytes_in;
  s.bytes_out += response.bytes_out;
  s.latency_us.record(latency_us);
  if (error_kind) {
    ++s.errors;
    ++s.errors_by_kind[*error_kind];
  }
}

void WorkerThread::recordCancelled(size_t stats_index) {
  std::lock_guard lock(stats_mutex_);
  ++book_.steps[stats_index].cancelled;
}

void WorkerThread::collect(common::StatsBook& into) {
  std::lock_guard lock(stats_mutex_);
  into.merge(book_);
  book_.reset();
}

Engine::Engine(std::shared_ptr<const common::Scenario> scenario, EngineOptions options,
               const common::Clock& clock)
    : scenario_(std::move(scenario)), options_(options), clock_(clock) {
  if (options_.threads <= 0)
    options_.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (options_.users < 0)
    options_.users = scenario_->load.users;
  // Never more threads than users: an idle thread would only cost memory.
  options_.threads = std::max(1, std::min(options_.threads, std::max(1, options_.users)));
  for (const auto& flow : scenario_->flows)
    collectInherited(scenario_->http, flow.steps, inherited_headers_);
  for (int i = 0; i < options_.threads; ++i)
    threads_.push_back(std::make_unique<WorkerThread>(*this, i));
}

Engine::~Engine() {
  halt();
  join();
}

void Engine::setErrorListener(std::function<void(const ErrorContext&)> listener) {
  error_listener_ = std::move(listener);
}

void Engine::start(common::SteadyTime t0) {
  t0_ = t0;
  const auto& load = scenario_->load;
  end_ = t0 + load.ramp + load.duration;
  const int users = options_.users;
  // Evenly over the ramp, and interleaved across the cluster: worker w of n starts its users
  // at phase w/n of its spacing, so that the cluster's ramp is smooth rather than n-fold steps.
  const double phase = double(options_.worker_index % std::max(1u, options_.worker_count)) /
                       double(std::max(1u, options_.worker_count));
  for (int i = 0; i < users; ++i) {
    auto offset =
        std::chrono::duration_cast<std::chrono::microseconds>(load.ramp * ((i + phase) / users));
    threads_[i % threads_.size()]->addUser(options_.first_vu + i, t0 + offset);
  }
  running_threads_.store(static_cast<int>(threads_.size()), std::memory_order_release);
  for (auto& t : threads_)
    t->thread_ = std::thread([raw = t.get()] { raw->run(); });
}

void Engine::halt() noexcept {
  if (halted_.exchange(true, std::memory_order_acq_rel))
    return;
  // The flag first, then the stamp: see VirtualUser::request.
  halted_at_ns_.store(toNs(clock_.now()), std::memory_order_release);
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

common::SteadyTime Engine::haltedAt() const {
  return common::SteadyTime(std::chrono::nanoseconds(halted_at_ns_.load()));
}

std::optional<ErrorContext> Engine::firstError() const {
  std::lock_guard lock(first_error_mutex_);
  return first_error_;
}

void Engine::reportError(ErrorContext context) {
  {
    std::lock_guard lock(first_error_mutex_);
    first_error_ = context;
  }
  // Stop locally first, before anyone hears of it: no request starts after the first error.
  if (scenario_->halt.on_error == common::HaltSpec::OnError::First)
    halt();
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

void Engine::collect(common::StatsBook& into) {
  for (auto& t : threads_)
    t->collect(into);
}

} // namespace stampede::worker
