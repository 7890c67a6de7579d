#include "worker/engine.h"

#include "common/json_path.h"
#include "common/load_plan.h"

#include <algorithm>
#include <thread>

namespace stampede::worker {
namespace {

using common::Flow;
using common::Step;
using common::ThinkTime;
using std::chrono::microseconds;

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

// Percent-encoding of a query or form value: unreserved characters stay, the rest is %XX
// (a form encodes a space as '+').
void appendEncoded(std::string& out, std::string_view text, bool form) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(char(c));
    } else if (form && c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

// A request target carries no raw space, control or non-ASCII byte (RFC 3986): a UTF-8 path
// from the scenario or a captured value is sent percent-encoded. Scans only; copies only when
// there is something to encode.
void encodeUnsafeTargetBytes(std::string& target) {
  const auto unsafe = [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte <= 0x20 || byte >= 0x7f;
  };
  const auto first = std::find_if(target.begin(), target.end(), unsafe);
  if (first == target.end())
    return;
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out(target.begin(), first);
  for (auto it = first; it != target.end(); ++it) {
    if (!unsafe(*it)) {
      out.push_back(*it);
      continue;
    }
    const auto byte = static_cast<unsigned char>(*it);
    out.push_back('%');
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 15]);
  }
  target.swap(out);
}

bool isRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Whether judging the step's response reads its body: then the client keeps it whole (up to
// http.max_body); otherwise it only counts it. A few tests, cheaper than a lookup per request.
bool readsBody(const Step& step) {
  if (step.expect.body_contains || !step.expect.json.empty())
    return true;
  for (const auto& capture : step.captures)
    if (capture.kind != common::Capture::Kind::Header)
      return true;
  return false;
}

// An exception's text, for an error report.
std::string describeException(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "an exception that is not a std::exception";
  }
}

} // namespace

// A feeder's position, shared by every load thread of this worker.
struct Engine::FeederCursor {
  std::atomic<uint64_t> next{0};
  std::vector<uint32_t> order; // shuffle: the rows in a random order, drawn once per run
};

// One load thread: its own io_context, HTTP client, stats book and virtual users.
class WorkerThread {
public:
  WorkerThread(Engine& engine, int index);
  void addUser(uint64_t vu, uint64_t cluster_number);
  void run();
  void cancelAll(bool cancel_requests);

  // Open model: starts iterations on this thread's arrivals (k = index, index + threads...).
  asio::awaitable<void> arrivals();

  struct Sample {
    int64_t latency_us;
    int64_t service_us = -1; // open model only
    int64_t lag_us = -1;     // open model: the first request of an arrival
  };
  void record(size_t stats_index, const HttpResponse& response, const Sample& sample,
              const std::string* error_kind);
  void recordCancelled(size_t stats_index);
  void recordDropped(size_t stats_index);
  void collect(common::StatsBook& into);
  // The completion of a coroutine this thread spawned: what escaped it, if anything, is an
  // error (the coroutine is gone; nothing it held is left waiting).
  void onEscape(std::exception_ptr error);

  Engine& engine_;
  int index_;
  asio::io_context io_{BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO};
  std::unique_ptr<HttpClient> client_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<struct VirtualUser>> users_;
  // Open model.
  std::vector<VirtualUser*> idle_;
  uint64_t in_flight_cap_ = 0;
  uint64_t in_flight_ = 0;
  asio::steady_timer arrival_timer_{io_};
  std::mutex stats_mutex_; // taken by this thread per record, by the control thread once a second
  common::StatsBook book_;
  SendLog sends_; // every send's stamp, for the count after the first error (Engine::sendsFrom)
  std::thread thread_;
};

// One virtual user: a coroutine with its own connection, buffers, think timer and values
// (captures and data columns).
struct VirtualUser {
  VirtualUser(WorkerThread& thread, uint64_t vu, uint64_t cluster_number)
      : thread(thread), engine(thread.engine_), vu(vu), cluster_number(cluster_number),
        session(thread.client_->newSession()), timer(thread.io_),
        slots(engine.scenario_->slots.size()) {
    ctx.vu = vu;
    ctx.worker_index = engine.options_.worker_index;
    ctx.rng = &thread.rng_;
    ctx.slots = slots.data();
  }

  // Closed model: loops iterations while the load curve wants this user.
  asio::awaitable<void> run();
  // Open model: one iteration, scheduled at `scheduled`; returns the user to the pool.
  asio::awaitable<void> arrival(const Flow& flow, common::SteadyTime scheduled);
  // Runs one iteration of `flow` (the closed model's ends early when the load curve lets
  // this user go). Returns false when this user must stop for good (the run is over, a
  // feeder ran out).
  asio::awaitable<bool> iterate(const Flow& flow, std::optional<common::SteadyTime> scheduled);
  // A request in plain functions around the co_await, not a coroutine of its own: a coroutine
  // frame per request is measurable at the rates we run. beginRequest renders `req` and
  // returns false when the run is over; endRequest records the outcome and returns false when
  // this virtual user must stop.
  bool beginRequest(const Step& step);
  bool beginRedirect(std::string_view location);
  // Stamps `sent`; false when the run is over.
  bool stampSend();
  bool endRequest(const Flow& flow, const Step& step, std::optional<common::SteadyTime> scheduled);
  asio::awaitable<bool> pause(microseconds d);
  const Flow& pickFlow() { return thread.engine_.pickFlow(thread.rng_); }
  bool mayStart() const { return !engine.stopping() && engine.clock_.now() < engine.end_; }
  // Closed model: whether the load curve wants this user now.
  bool wanted() const {
    return engine.curve_->levelAt(engine.sinceStart()) > double(cluster_number);
  }
  bool drawData(const Flow& flow);
  // An exception escaped this user's iteration of `flow`: counts and reports it as an error
  // of kind "internal" against the step it was in, and gives the user a fresh session (the
  // old one may be mid-request). Returns false when the user cannot go on (no session).
  bool fail(const Flow& flow, std::exception_ptr error);
  // Checks the response against the step's expectations and takes its captures; returns the
  // error kind, or nullptr. `detail` says what was wanted.
  const char* judge(const Step& step, int64_t service_us);
  void reportError(const Flow& flow, const Step& step, const HttpRequest& request,
                   const HttpResponse& response, const std::string& kind, common::SteadyTime done);

  WorkerThread& thread;
  Engine& engine;
  uint64_t vu;
  uint64_t cluster_number;
  std::unique_ptr<HttpSession> session;
  asio::steady_timer timer;
  std::vector<std::string> slots;
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
  std::string detail;
  int redirects = 0;
  const Step* current_step = nullptr; // the request step of the iteration, for fail()
};

asio::awaitable<void> VirtualUser::run() {
  while (mayStart()) {
    if (!wanted()) {
      // Parked: ramped down, or not yet ramped up. Sleep until the curve wants us again.
      const auto next = engine.curve_->nextTimeAbove(
          double(cluster_number), std::max(microseconds(0), engine.sinceStart()));
      if (!next || engine.t0_ + *next >= engine.end_)
        break;
      timer.expires_at(std::chrono::steady_clock::time_point(engine.t0_ + *next));
      boost::system::error_code ec;
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (!engine.takeIteration())
      break;
    engine.active_users_.fetch_add(1, std::memory_order_relaxed);
    const Flow& flow = pickFlow();
    bool go_on = false;
    bool failed = false;
    try {
      go_on = co_await iterate(flow, std::nullopt);
    } catch (...) {
      go_on = fail(flow, std::current_exception());
      failed = true;
    }
    engine.active_users_.fetch_sub(1, std::memory_order_relaxed);
    ++ctx.iteration;
    if (!go_on)
      break;
    if (failed) // let the thread's other users and a halt in before the next iteration
      co_await asio::post(thread.io_, asio::use_awaitable);
  }
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
  --thread.in_flight_;
  if (usable)
    thread.idle_.push_back(this);
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
  Position stack[8];
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
      if (closed && !wanted())
        co_return mayStart();
      current_step = &step;
      redirects = 0;
      go_on = beginRequest(step);
      while (go_on) {
        co_await session->perform(req, response);
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
      go_on = co_await pause(drawThink(step.think, thread.rng_));
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
    const auto row = engine.drawRow(f, thread.rng_);
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
  encodeUnsafeTargetBytes(target_buf);
  if (!step.query.empty()) {
    bool first = target_buf.find('?') == std::string::npos;
    for (const auto& [name, value] : step.query) {
      target_buf.push_back(first ? '?' : '&');
      first = false;
      appendEncoded(target_buf, name, false);
      target_buf.push_back('=');
      render_buf.clear();
      value.renderTo(ctx, render_buf);
      appendEncoded(target_buf, render_buf, false);
    }
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
  if (step.body) {
    step.body->renderTo(ctx, body_buf);
  } else if (!step.form.empty()) {
    for (const auto& [name, value] : step.form) {
      if (!body_buf.empty())
        body_buf.push_back('&');
      appendEncoded(body_buf, name, true);
      body_buf.push_back('=');
      render_buf.clear();
      value.renderTo(ctx, render_buf);
      appendEncoded(body_buf, render_buf, true);
    }
  }

  req.method = step.method;
  req.endpoint = endpoint;
  req.target = target_buf;
  req.headers = &headers_buf;
  req.body = body_buf;
  req.timeout = step.timeout.value_or(scenario.http.timeout);
  req.keep_body = readsBody(step);

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
  // Location is absolute (another endpoint, maybe) or a path on the same endpoint.
  std::string next(location);
  if (auto endpoint = common::parseEndpoint(next)) {
    absolute = std::move(endpoint);
    target_buf.assign(absolute->base_path.empty() ? "/" : absolute->base_path);
    req.endpoint = &*absolute;
  } else if (!next.empty() && next.front() == '/') {
    target_buf.assign(next);
  } else {
    // Relative to the current path's directory.
    const auto slash = target_buf.rfind('/', target_buf.find('?'));
    target_buf.resize(slash == std::string::npos ? 0 : slash + 1);
    target_buf.append(next);
  }
  req.target = target_buf;
  // 303, and 301/302 after a POST, continue as a GET without a body (what browsers do).
  if (response.status == 303 || ((response.status == 301 || response.status == 302) &&
                                 req.method == std::string_view("POST"))) {
    req.method = "GET";
    req.body = {};
  }
  return stampSend();
}

const char* VirtualUser::judge(const Step& step, int64_t service_us) {
  const auto& expect = step.expect;
  if (!expect.allows(response.status)) {
    error_kind.assign("http_");
    error_kind.append(std::to_string(response.status));
    detail = "status " + std::to_string(response.status) + " not allowed by expect";
    return error_kind.c_str();
  }
  if (expect.body_contains && response.body.find(*expect.body_contains) == std::string_view::npos) {
    detail = "body does not contain \"" + *expect.body_contains + "\"";
    return "expect_body";
  }
  // The body is parsed once, and only when something reads it as JSON.
  std::optional<nlohmann::json> document;
  bool parsed = false;
  auto json = [&]() -> const nlohmann::json* {
    if (!parsed) {
      parsed = true;
      document = common::parseJsonBody(response.body);
    }
    return document ? &*document : nullptr;
  };
  for (const auto& want : expect.json) {
    const nlohmann::json* root = json();
    const nlohmann::json* value = root ? common::findJson(*root, want.path) : nullptr;
    if (value == nullptr) {
      detail = root ? want.path.text + " not found in the body" : "body is not JSON";
      return "expect_json";
    }
    const std::string got = value->dump();
    if (got != want.expected_json) {
      detail = want.path.text + " is " + got + ", expected " + want.expected_json;
      return "expect_json";
    }
  }
  for (const auto& want : expect.header) {
    const auto value = session->header(want.name);
    if (!value || value->find(want.contains) == std::string_view::npos) {
      detail = value ? "header " + want.name + " is \"" + std::string(*value) +
                           "\", expected it to contain \"" + want.contains + "\""
                     : "header " + want.name + " is missing";
      return "expect_header";
    }
  }
  if (expect.max_latency && service_us > expect.max_latency->count()) {
    detail = "took " + std::to_string(service_us / 1000) + " ms, max_latency is " +
             std::to_string(expect.max_latency->count() / 1000) + " ms";
    return "expect_latency";
  }
  for (const auto& capture : step.captures) {
    std::string& slot = slots[capture.slot];
    bool found = false;
    switch (capture.kind) {
    case common::Capture::Kind::Json:
      if (const nlohmann::json* root = json()) {
        if (const nlohmann::json* value = common::findJson(*root, capture.json)) {
          slot = common::jsonCaptureText(*value);
          found = true;
        }
      }
      break;
    case common::Capture::Kind::Header:
      if (auto value = session->header(capture.header)) {
        slot.assign(*value);
        found = true;
      }
      break;
    case common::Capture::Kind::Regex: {
      std::match_results<std::string_view::const_iterator> match;
      if (std::regex_search(response.body.begin(), response.body.end(), match, *capture.regex) &&
          match.size() > 1 && match[1].matched) {
        slot.assign(match[1].first, match[1].second);
        found = true;
      }
      break;
    }
    }
    if (!found) {
      slot.clear();
      detail = "capture '" + capture.name + "' found nothing";
      return "capture_missing";
    }
  }
  return nullptr;
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
    kind = judge(step, service_us);
  }
  if (kind != nullptr && kind != error_kind.c_str())
    error_kind.assign(kind);
  WorkerThread::Sample sample{service_us};
  if (engine.open_) {
    sample.service_us = service_us;
    if (scheduled) {
      sample.latency_us = common::microsBetween(*scheduled, done);
      sample.lag_us = common::microsBetween(*scheduled, sent);
    }
  }
  thread.record(step.stats_index, response, sample, kind ? &error_kind : nullptr);
  if (kind) {
    engine.noteError();
    reportError(flow, step, req, response, error_kind, done);
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
  context.method = std::string(request.method);
  const auto& endpoint = *request.endpoint;
  if (redirects > 0) {
    // The hop that failed, not the step's own URL.
    context.url = endpoint.scheme + "://" + endpoint.host + ":" + std::to_string(endpoint.port) +
                  std::string(request.target);
  } else {
    std::string masked_path;
    step.url.renderTo(ctx, masked_path, /*mask_secrets=*/true);
    if (step.url_absolute) {
      context.url = masked_path;
    } else {
      context.url = endpoint.scheme + "://" + endpoint.host + ":" + std::to_string(endpoint.port) +
                    engine.scenario_->target.base_path +
                    (masked_path.empty() || masked_path.front() != '/' ? "/" : "") + masked_path;
    }
    // Query values may carry secrets too: shown as the step renders them, masked.
    if (!step.query.empty()) {
      bool first = context.url.find('?') == std::string::npos;
      for (const auto& [name, value] : step.query) {
        context.url += first ? '?' : '&';
        first = false;
        appendEncoded(context.url, name, false);
        context.url += '=';
        std::string rendered;
        value.renderTo(ctx, rendered, /*mask_secrets=*/true);
        appendEncoded(context.url, rendered, false);
      }
    }
  }
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
    ErrorContext context;
    context.worker_index = engine.options_.worker_index;
    context.vu = vu;
    context.flow = flow.name;
    if (step) {
      context.step = engine.scenario_->step_table[step->stats_index].name;
      context.method = std::string(step->method);
    }
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

WorkerThread::WorkerThread(Engine& engine, int index)
    : engine_(engine), index_(index), rng_(std::random_device{}() ^ (uint64_t(index) << 32)),
      book_(engine.scenario_->step_table.size()) {
  const auto& http = engine.scenario_->http;
  const auto& allow = engine.options_.allow_target;
  if (engine.options_.client_factory)
    client_ = engine.options_.client_factory(io_, http);
  else if (http.engine == common::HttpSpec::Engine::Curl)
    client_ = makeCurlClient(io_, http, allow);
  else
    client_ = makeBeastClient(io_, http, allow);
}

void WorkerThread::addUser(uint64_t vu, uint64_t cluster_number) {
  users_.push_back(std::make_unique<VirtualUser>(*this, vu, cluster_number));
}

asio::awaitable<void> WorkerThread::arrivals() {
  Engine& e = engine_;
  const uint64_t step = e.threads_.size();
  const double phase = double(e.options_.worker_index % std::max(1u, e.options_.worker_count)) /
                       double(std::max(1u, e.options_.worker_count));
  uint64_t next_vu = 0;
  for (uint64_t k = uint64_t(index_);; k += step) {
    const auto offset = e.curve_->timeOfArrival(double(k) + phase);
    if (!offset)
      break;
    const common::SteadyTime at = e.t0_ + *offset;
    if (at >= e.end_ || e.stopping() || e.data_stopped_.load(std::memory_order_acquire))
      break;
    if (e.clock_.now() < at) {
      arrival_timer_.expires_at(std::chrono::steady_clock::time_point(at));
      boost::system::error_code ec;
      co_await arrival_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (e.stopping() || e.data_stopped_.load(std::memory_order_acquire))
        break;
    }
    const Flow& flow = e.pickFlow(rng_);
    if (in_flight_ >= in_flight_cap_) {
      // Never queued: a late start would hide the wait from the latency figures.
      recordDropped(flow.first_request_stats_index);
      continue;
    }
    // A dropped arrival is not an iteration: only one that starts takes from the budget.
    if (!e.takeIteration())
      break;
    VirtualUser* user;
    if (!idle_.empty()) {
      user = idle_.back();
      idle_.pop_back();
    } else {
      // Numbered first_vu + thread + threads * n: unique across the worker's threads, and
      // below first_vu + max_in_flight, the block the master gave this worker.
      const uint64_t vu = e.options_.first_vu + uint64_t(index_) + step * next_vu++;
      users_.push_back(std::make_unique<VirtualUser>(*this, vu, vu));
      user = users_.back().get();
    }
    ++in_flight_;
    asio::co_spawn(io_, user->arrival(flow, at),
                   [this](std::exception_ptr error) { onEscape(error); });
  }
}

void WorkerThread::run() {
  auto on_escape = [this](std::exception_ptr error) { onEscape(error); };
  if (engine_.open_) {
    asio::co_spawn(io_, arrivals(), on_escape);
  } else {
    for (auto& user : users_)
      asio::co_spawn(io_, user->run(), on_escape);
  }
  io_.run();
  // Sessions own sockets of this io_context: release them on this thread.
  idle_.clear();
  users_.clear();
  if (engine_.running_threads_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
      engine_.finished_listener_)
    engine_.finished_listener_();
}

void WorkerThread::cancelAll(bool cancel_requests) {
  // Runs on this thread (posted), so it may touch sessions and timers.
  arrival_timer_.cancel();
  for (auto& user : users_) {
    user->timer.cancel();
    if (cancel_requests && user->session)
      user->session->cancel();
  }
}

void WorkerThread::record(size_t stats_index, const HttpResponse& response, const Sample& sample,
                          const std::string* error_kind) {
  std::lock_guard lock(stats_mutex_);
  auto& s = book_.steps[stats_index];
  ++s.requests;
  s.bytes_in += response.bytes_in;
  s.bytes_out += response.bytes_out;
  if (response.http_version == 20)
    ++s.http2_responses;
  s.latency_us.record(sample.latency_us);
  if (sample.service_us >= 0)
    s.service_us.record(sample.service_us);
  if (sample.lag_us >= 0)
    s.schedule_lag_us.record(sample.lag_us);
  if (error_kind) {
    ++s.errors;
    ++s.errors_by_kind[*error_kind];
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
  std::lock_guard lock(stats_mutex_);
  ++book_.steps[stats_index].cancelled;
}

void WorkerThread::recordDropped(size_t stats_index) {
  std::lock_guard lock(stats_mutex_);
  ++book_.steps[stats_index].dropped;
}

void WorkerThread::collect(common::StatsBook& into) {
  std::lock_guard lock(stats_mutex_);
  into.merge(book_);
  book_.reset();
}

Engine::Engine(std::shared_ptr<const common::Scenario> scenario, EngineOptions options,
               const common::Clock& clock)
    : scenario_(std::move(scenario)), options_(std::move(options)), clock_(clock) {
  const auto& load = scenario_->load;
  open_ = load.model == common::LoadSpec::Model::Open;
  if (options_.threads <= 0)
    options_.threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (!options_.cluster_users) {
    std::vector<uint64_t> all(open_ ? 0 : size_t(std::max(0, load.users)));
    for (size_t i = 0; i < all.size(); ++i)
      all[i] = i;
    options_.cluster_users = std::move(all);
  }
  if (!options_.max_in_flight)
    options_.max_in_flight = load.max_in_flight ? load.max_in_flight : common::kDefaultMaxInFlight;
  if (!options_.iterations)
    options_.iterations = load.iterations;
  if (*options_.iterations > 0)
    iterations_left_.store(int64_t(*options_.iterations));
  curve_ = std::make_unique<common::LoadCurve>(load.stages, open_ ? options_.rate_share : 1.0);

  // Never more threads than users (or in-flight slots): an idle thread would only cost memory.
  const uint64_t units = open_ ? *options_.max_in_flight : options_.cluster_users->size();
  options_.threads = int(std::max<uint64_t>(1, std::min<uint64_t>(options_.threads, units)));
  for (const auto& flow : scenario_->flows)
    collectInherited(scenario_->http, flow.steps, inherited_headers_);
  for (const auto& feeder : scenario_->data) {
    auto cursor = std::make_unique<FeederCursor>();
    if (feeder.order == common::Feeder::Order::Shuffle) {
      cursor->order.resize(feeder.rows.size());
      for (size_t i = 0; i < cursor->order.size(); ++i)
        cursor->order[i] = uint32_t(i);
      std::mt19937_64 rng(std::random_device{}());
      std::shuffle(cursor->order.begin(), cursor->order.end(), rng);
    }
    feeders_.push_back(std::move(cursor));
  }
  flow_weight_total_ = 0;
  for (const auto& f : scenario_->flows)
    flow_weight_total_ += f.weight;
  for (int i = 0; i < options_.threads; ++i)
    threads_.push_back(std::make_unique<WorkerThread>(*this, i));
  if (open_) {
    const uint64_t cap = *options_.max_in_flight;
    for (size_t i = 0; i < threads_.size(); ++i)
      threads_[i]->in_flight_cap_ = cap / threads_.size() + (i < cap % threads_.size() ? 1 : 0);
  }
}

Engine::~Engine() {
  halt();
  join();
}

void Engine::setErrorListener(std::function<void(const ErrorContext&)> listener) {
  error_listener_ = std::move(listener);
}

const Flow& Engine::pickFlow(std::mt19937_64& rng) const {
  const auto& flows = scenario_->flows;
  if (flows.size() == 1)
    return flows[0];
  std::uniform_real_distribution<double> pick(0.0, flow_weight_total_);
  double x = pick(rng);
  for (const auto& f : flows) {
    if (x < f.weight)
      return f;
    x -= f.weight;
  }
  return flows.back();
}

bool Engine::takeIteration() {
  if (*options_.iterations == 0)
    return true;
  return iterations_left_.fetch_sub(1, std::memory_order_relaxed) > 0;
}

std::optional<size_t> Engine::drawRow(size_t f, std::mt19937_64& rng) {
  const auto& feeder = scenario_->data[f];
  const size_t rows = feeder.rows.size();
  if (rows == 0)
    return std::nullopt;
  if (feeder.order == common::Feeder::Order::Random) {
    std::uniform_int_distribution<size_t> pick(0, rows - 1);
    return pick(rng);
  }
  const uint64_t n = feeders_[f]->next.fetch_add(1, std::memory_order_relaxed);
  if (n >= rows && feeder.on_exhausted != common::Feeder::OnExhausted::Wrap)
    return std::nullopt;
  const size_t at = size_t(n % rows);
  return feeder.order == common::Feeder::Order::Shuffle ? feeders_[f]->order[at] : at;
}

void Engine::start(common::SteadyTime t0) {
  t0_ = t0;
  end_ = t0 + curve_->total();
  if (!open_) {
    const auto& mine = *options_.cluster_users;
    for (size_t i = 0; i < mine.size(); ++i)
      threads_[i % threads_.size()]->addUser(mine[i], mine[i]);
  }
  running_threads_.store(static_cast<int>(threads_.size()), std::memory_order_release);
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

void Engine::collect(common::StatsBook& into) {
  for (auto& t : threads_)
    t->collect(into);
}

} // namespace stampede::worker
