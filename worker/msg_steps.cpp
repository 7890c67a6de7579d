// The virtual user's messaging steps: publish (stamped, optionally confirmed) and subscribe
// (receive N, end-to-end latency on the master's clock, loss and duplicates from the
// producers' sequence numbers: checked here on topics, by the master on queues from what each
// worker's QueueLedger recorded). Used on the user's load thread only.
#include "worker/beast_connection.h"
#include "worker/virtual_user.h"

#include <algorithm>
#include <charconv>

namespace stampede::worker {
namespace {

using common::Flow;
using common::Step;
using std::chrono::microseconds;

int64_t parseInt(std::string_view text) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  return ec == std::errc() && end == text.data() + text.size() ? v : -1;
}

// The run's id: its start on the master's clock, the same on every worker.
int64_t runId(const Engine& engine, int64_t offset_ns, common::SteadyTime t0) {
  (void)engine;
  return toNs(t0) - offset_ns;
}

ConnectionSettings settingsFor(const common::MessagingSpec& spec, const common::RenderContext& ctx,
                               WorkerThread& thread) {
  ConnectionSettings s;
  s.urls = spec.urls;
  s.heartbeat = spec.heartbeat;
  if (std::any_of(spec.urls.begin(), spec.urls.end(), [](const auto& u) { return u.tls; })) {
    if (!thread.messaging_tls_)
      thread.messaging_tls_ = std::make_shared<BeastTlsConfig>(spec.tls);
    s.tls = thread.messaging_tls_;
  }
  s.reconnect = spec.reconnect;
  if (!spec.client_id.source().empty())
    s.client_id = spec.client_id.render(ctx);
  if (spec.user || spec.password) {
    s.has_login = true;
    if (spec.user)
      s.user = spec.user->render(ctx);
    if (spec.password)
      s.password = spec.password->render(ctx);
  }
  return s;
}

// Reconnects within the budget are counted, not errors.
void countReconnects(VirtualUser& user, const Step& step) {
  const uint64_t now = user.messaging->reconnects();
  if (now > user.reconnects_counted) {
    user.thread.recordCount(step.stats_index, "reconnects", now - user.reconnects_counted);
    const auto& times = user.messaging->reconnectTimes();
    user.thread.stats_.update([&](common::StatsBook& book) {
      for (size_t i = user.reconnects_counted; i < now && i < times.size(); ++i)
        book.steps[step.stats_index].reconnect_us.record(times[i].count());
    });
    user.reconnects_counted = now;
  }
}

// The worker index of a stampede_src ("worker.vu"); -1 when it is not one.
int64_t workerOf(std::string_view src) {
  const size_t dot = src.find('.');
  return dot == std::string_view::npos ? -1 : parseInt(src.substr(0, dot));
}

SubscriptionRequest requestFor(const common::SubscribeSpec& spec,
                               const common::RenderContext& ctx) {
  SubscriptionRequest request;
  request.from = spec.from;
  if (spec.durable)
    request.durable = spec.durable->render(ctx);
  request.client_ack = spec.ack == common::SubscribeSpec::Ack::Client;
  request.prefetch = spec.prefetch;
  return request;
}

} // namespace

int64_t Engine::toMasterNs(common::SteadyTime t) const {
  if (options_.clock_model)
    return options_.clock_model->toMasterNs(toNs(t));
  return toNs(t) - options_.clock_offset_ns;
}

asio::awaitable<void> VirtualUser::subscribeAhead() {
  if (const Flow* flow = common::lifeFlow(*engine.scenario_, *group.spec, vu))
    co_await subscribeAll(*flow, flow->steps);
}

asio::awaitable<bool> VirtualUser::subscribeAll(const Flow& flow, const std::vector<Step>& steps) {
  for (const Step& step : steps) {
    if (step.kind == Step::Kind::Loop) {
      if (!co_await subscribeAll(flow, step.steps))
        co_return false;
      continue;
    }
    if (step.kind != Step::Kind::Subscribe)
      continue;
    if (engine.stopping())
      co_return false;
    if (!messaging)
      messaging =
          makeStompSession(thread.io_, settingsFor(*engine.scenario_->messaging, ctx, thread));
    const auto& spec = *step.subscribe;
    const MsgResult result = co_await messaging->subscribe(requestFor(spec, ctx), spec.timeout);
    countReconnects(*this, step);
    if (result.error == MsgError::Cancelled)
      co_return false;
    if (!result.ok()) {
      error_kind.assign(msgErrorKindName(result.error));
      detail = "before the start (start barrier): " + result.detail;
      thread.record(step.stats_index, HttpResponse{}, WorkerThread::Sample{0}, &error_kind);
      engine.noteError();
      reportMsgError(flow, step, spec.from.text() + " at " + messaging->describePeer(),
                     engine.clock_.now());
      co_return false;
    }
    engine.noteSubscribed();
  }
  co_return true;
}

asio::awaitable<bool> VirtualUser::publishStep(const Flow& flow, const Step& step,
                                               std::optional<common::SteadyTime> scheduled) {
  const auto& spec = *step.publish;
  if (!messaging)
    messaging =
        makeStompSession(thread.io_, settingsFor(*engine.scenario_->messaging, ctx, thread));
  msg_body.clear();
  spec.body.renderTo(ctx, msg_body);
  msg_properties.clear();
  for (const auto& [name, value] : spec.properties)
    msg_properties.emplace_back(name, value.render(ctx));
  if (!stampSend())
    co_return false;
  const int64_t offset = engine.options_.clock_offset_ns;
  const auto sched = scheduled.value_or(sent);
  const std::string to = spec.to.text();
  const std::string src = std::to_string(engine.options_.worker_index) + "." + std::to_string(vu);
  const uint64_t seq = ++publish_seq[to];
  msg_properties.emplace_back("stampede_run", std::to_string(runId(engine, offset, engine.t0_)));
  msg_properties.emplace_back("stampede_src", src);
  msg_properties.emplace_back("stampede_seq", std::to_string(seq));
  // On the master's clock with the offset of the moment (re-measured during the run) ...
  msg_properties.emplace_back("stampede_t_sched", std::to_string(engine.toMasterNs(sched)));
  msg_properties.emplace_back("stampede_t_sent", std::to_string(engine.toMasterNs(sent)));
  // ... and on this worker's own: a consumer on this worker measures exactly, with no offset.
  msg_properties.emplace_back("stampede_t_sent_worker", std::to_string(toNs(sent)));
  OutMessage message{&spec.to, msg_body, &msg_properties, spec.persistent};
  const MsgResult result = co_await messaging->publish(message, spec.confirm, spec.timeout);
  const auto done = engine.clock_.now();
  countReconnects(*this, step);
  if (result.error == MsgError::Cancelled) {
    thread.recordCancelled(step.stats_index);
    co_return false;
  }
  const int64_t service_us = common::microsBetween(sent, done);
  WorkerThread::Sample sample{service_us};
  if (group.open && scheduled) {
    sample.service_us = service_us;
    sample.latency_us = common::microsBetween(*scheduled, done);
    sample.lag_us = common::microsBetween(*scheduled, sent);
  }
  HttpResponse wire;
  wire.bytes_out = msg_body.size();
  if (result.ok()) {
    thread.record(step.stats_index, wire, sample, nullptr);
    // A queue some step consumes from: the master checks every confirmed message is taken.
    if (!spec.to.topic && engine.consumed_queues_.count(to))
      engine.queue_ledger_.confirmed(uint32_t(step.stats_index), to, src, seq);
    co_return true;
  }
  error_kind.assign(msgErrorKindName(result.error));
  detail = result.detail;
  thread.record(step.stats_index, wire, sample, &error_kind);
  engine.noteError();
  reportMsgError(flow, step, spec.to.text() + " at " + messaging->describePeer(), done);
  co_return !engine.halted();
}

asio::awaitable<bool> VirtualUser::subscribeStep(const Flow& flow, const Step& step) {
  const auto& spec = *step.subscribe;
  if (!messaging)
    messaging =
        makeStompSession(thread.io_, settingsFor(*engine.scenario_->messaging, ctx, thread));
  if (engine.stopping())
    co_return false;
  const std::string where = spec.from.text();
  const auto fail = [&](const MsgResult& result, common::SteadyTime done) {
    if (result.error == MsgError::Cancelled) {
      thread.recordCancelled(step.stats_index);
      return false;
    }
    error_kind.assign(msgErrorKindName(result.error));
    detail = result.detail;
    thread.record(step.stats_index, HttpResponse{}, WorkerThread::Sample{0}, &error_kind);
    engine.noteError();
    reportMsgError(flow, step, where + " at " + messaging->describePeer(), done);
    return !engine.halted();
  };
  const SubscriptionRequest request = requestFor(spec, ctx);
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + spec.timeout;
  MsgResult result = co_await messaging->subscribe(request, spec.timeout);
  if (!result.ok())
    co_return fail(result, engine.clock_.now());
  if (spec.on_end == common::SubscribeSpec::OnEnd::Unsubscribe)
    unsubscribe_at_end = true;

  const int64_t offset = engine.options_.clock_offset_ns;
  const std::string run = std::to_string(runId(engine, offset, engine.t0_));
  for (int received = 0; received < spec.receive;) {
    if (engine.halted())
      co_return false;
    const auto left =
        std::chrono::duration_cast<microseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result = MsgResult{MsgError::ReceiveTimeout, {}};
    } else {
      result = co_await messaging->receive(msg_in, left);
    }
    const auto done = engine.clock_.now();
    countReconnects(*this, step);
    if (!result.ok()) {
      // The run ended while this user waited: what did not come is not an error.
      if (result.error == MsgError::ReceiveTimeout && engine.stopping()) {
        thread.recordCancelled(step.stats_index);
        co_return false;
      }
      if (result.error == MsgError::ReceiveTimeout)
        result.detail = "received " + std::to_string(received) + " of " +
                        std::to_string(spec.receive) + " messages from " + where + " within " +
                        std::to_string(spec.timeout.count() / 1000) + " ms";
      co_return fail(result, done);
    }
    const std::string_view from_run = msg_in.property("stampede_run");
    if (!from_run.empty() && from_run != run) {
      // Left in a durable subscription by an earlier run: not this run's latency.
      thread.recordCount(step.stats_index, "stale");
      if (request.client_ack)
        co_await messaging->ack(msg_in);
      continue;
    }
    ++received;
    const char* kind = nullptr;
    WorkerThread::Sample sample{0};
    const int64_t seq = parseInt(msg_in.property("stampede_seq"));
    const int64_t t_sched = parseInt(msg_in.property("stampede_t_sched"));
    const int64_t t_sent = parseInt(msg_in.property("stampede_t_sent"));
    const int64_t now_master = engine.toMasterNs(done);
    const std::string_view src = msg_in.property("stampede_src");
    const bool same_worker = workerOf(src) == int64_t(engine.options_.worker_index);
    const int64_t t_sent_worker = parseInt(msg_in.property("stampede_t_sent_worker"));
    if (t_sched > 0 && t_sent > 0) {
      sample.latency_us = std::max<int64_t>(0, (now_master - t_sched) / 1000);
      sample.service_us = std::max<int64_t>(0, (now_master - t_sent) / 1000);
      // Producer and consumer on one worker: one clock, no offset in between.
      if (same_worker && t_sent_worker > 0)
        thread.recordEndToEnd(step.stats_index, true,
                              std::max<int64_t>(0, (toNs(done) - t_sent_worker) / 1000));
      else
        thread.recordEndToEnd(step.stats_index, false, sample.service_us);
    }
    if (!spec.from.topic && seq > 0 && !from_run.empty() && !src.empty() &&
        engine.consumed_queues_.count(where))
      engine.queue_ledger_.consumed(uint32_t(step.stats_index), where, src, uint64_t(seq),
                                    msg_in.redelivered);
    // Topics: each subscriber sees every producer's sequence in order, so a gap is a loss and
    // a step back a duplicate. (Queues share messages among consumers: not checked here.)
    if (spec.from.topic && seq > 0 && !from_run.empty()) {
      uint64_t& last = last_seq[std::to_string(step.stats_index) + "|" + std::string(src)];
      if (last != 0 && uint64_t(seq) <= last) {
        if (!msg_in.redelivered) {
          kind = "message_duplicate";
          detail =
              "message " + std::to_string(seq) + " of producer " + std::string(src) + " came twice";
        }
      } else if (last != 0 && uint64_t(seq) > last + 1) {
        kind = "message_lost";
        detail = "messages " + std::to_string(last + 1) + ".." + std::to_string(seq - 1) +
                 " of producer " + std::string(src) + " never came (next was " +
                 std::to_string(seq) + ")";
      }
      last = std::max<uint64_t>(last, uint64_t(seq));
    }
    if (!kind && spec.expect_body && msg_in.body.find(*spec.expect_body) == std::string::npos) {
      kind = "expect_body";
      detail = "the message body does not contain '" + *spec.expect_body + "'";
    }
    if (!kind && spec.max_latency && sample.latency_us > spec.max_latency->count()) {
      kind = "max_latency";
      detail = "end-to-end latency " + std::to_string(sample.latency_us) + " us is over " +
               std::to_string(spec.max_latency->count()) + " us";
    }
    HttpResponse wire;
    wire.bytes_in = msg_in.body.size();
    if (kind)
      error_kind.assign(kind);
    thread.record(step.stats_index, wire, sample, kind ? &error_kind : nullptr);
    if (msg_in.redelivered)
      thread.recordCount(step.stats_index, "redelivered");
    if (request.client_ack && !kind)
      co_await messaging->ack(msg_in);
    if (kind) {
      engine.noteError();
      reportMsgError(flow, step, where + " at " + messaging->describePeer(), done);
      if (engine.halted())
        co_return false;
    }
  }
  co_return true;
}

asio::awaitable<void> VirtualUser::closeMessaging() {
  co_await messaging->close(unsubscribe_at_end);
}

void VirtualUser::reportMsgError(const Flow& flow, const Step& step, const std::string& where,
                                 common::SteadyTime done) {
  if (engine.first_error_taken_.exchange(true, std::memory_order_acq_rel))
    return;
  ErrorContext context = errorContext(flow, &step);
  context.method = step.kind == Step::Kind::Publish ? "PUBLISH" : "SUBSCRIBE";
  context.url = where;
  context.error_kind = error_kind;
  context.detail = detail;
  if (step.kind == Step::Kind::Subscribe)
    context.body.assign(msg_in.body.substr(0, kBodyExcerptBytes));
  context.at = done;
  context.wall_at = std::chrono::system_clock::now();
  engine.reportError(std::move(context));
}

} // namespace stampede::worker
