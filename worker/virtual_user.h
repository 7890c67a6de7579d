// One virtual user: a coroutine on its load thread with its own session (keep-alive
// connection), rendered request, think timer and values (captures and data columns). Closed
// model: it loops iterations of its flows while the load curve wants it. Open model: it runs
// one iteration per arrival and goes back to its thread's pool. Used on its load thread only.
#pragma once

#include "worker/engine.h"
#include "worker/load_thread.h"
#include "worker/msg_session.h"
#include "worker/request_render.h"
#include "worker/request_wait.h"

#include <chrono>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace stampede::worker {

struct VirtualUser {
  // `group`: the load group (Engine::Group::index) whose user it is, for life.
  VirtualUser(WorkerThread& thread, uint64_t vu, size_t group);

  // Closed model: loops iterations while the load curve wants this user.
  asio::awaitable<void> run();
  // Open model: one iteration, scheduled at `scheduled`; returns the user to the pool.
  asio::awaitable<void> arrival(const common::Flow& flow, common::SteadyTime scheduled);
  // Runs one iteration of `flow` (the closed model's ends early when the load curve lets
  // this user go). Returns false when this user must stop for good (the run is over, a
  // feeder ran out).
  asio::awaitable<bool> iterate(const common::Flow& flow,
                                std::optional<common::SteadyTime> scheduled);
  // A request in plain functions around the co_await, not a coroutine of its own: a coroutine
  // frame per request is measurable at the rates we run. beginRequest renders the request
  // and returns false when the run is over; endRequest records the outcome and returns false
  // when this virtual user must stop.
  bool beginRequest(const common::Step& step);
  bool beginRedirect(std::string_view location);
  // Stamps `sent`; false when the run is over.
  bool stampSend();
  bool endRequest(const common::Flow& flow, const common::Step& step,
                  std::optional<common::SteadyTime> scheduled);
  asio::awaitable<bool> pause(std::chrono::microseconds d);
  const common::Flow& pickFlow() {
    // Flows with `users:` pin a role (a subscriber stays one): by user number.
    const auto& flows = engine.scenario_->flows;
    if (flows.front().users > 0)
      for (const auto& f : flows)
        if (vu < f.first_user + f.users)
          return f;
    return thread.engine_.pickFlow(group, thread.rng_);
  }
  bool mayStart() const { return !engine.stopping() && engine.clock_.now() < engine.end_; }
  // Closed model: whether the load curve wants this user now.
  bool wanted() const { return group.curve->levelAt(engine.sinceStart()) > rank(); }
  // Closed model: this user's place in its group, which the curve's level is compared with.
  double rank() const { return double(vu - group.spec->first_vu); }
  // Takes the next row of each of the flow's feeders into the slots; false when one ran out.
  bool drawData(const common::Flow& flow);
  // An exception escaped this user's iteration of `flow`: counts and reports it as an error
  // of kind "internal" against the step it was in, and gives the user a fresh session (the
  // old one may be mid-request). Returns false when the user cannot go on (no session).
  bool fail(const common::Flow& flow, std::exception_ptr error);
  // The first error of the run builds the full context; later ones are only counted.
  void reportError(const common::Flow& flow, const common::Step& step, const std::string& kind,
                   common::SteadyTime done);
  // Who failed where, for every first-error report (HTTP, messaging, an exception): the
  // worker, this user, the flow and, when known, the step.
  ErrorContext errorContext(const common::Flow& flow, const common::Step* step) const;

  WorkerThread& thread;
  Engine& engine;
  uint64_t vu; // unique across the cluster; closed model: wanted while the curve is above rank()
  Engine::Group& group;
  // Closed model: handed to a worker that joined beyond --expect-workers (Engine::reshare):
  // this user ends after its current iteration.
  bool retired = false;
  bool in_iteration = false;
  std::unique_ptr<HttpSession> session;
  EngineTimer timer; // think pauses and ramp parking, on the engine's clock
  std::vector<std::string> slots;
  common::RenderContext ctx;
  RenderedRequest rendered;
  common::SteadyTime sent{};
  HttpResponse response;
  RequestWait request_wait; // the iteration, while a request HttpSession::start() began is out
  std::string error_kind;
  std::string detail;
  int redirects = 0;
  const common::Step* current_step = nullptr; // the request step of the iteration, for fail()

  // Messaging steps (worker/msg_steps.cpp): this user's broker connection, opened by its first
  // publish or subscribe step and kept for its life.
  asio::awaitable<bool> publishStep(const common::Flow& flow, const common::Step& step,
                                    std::optional<common::SteadyTime> scheduled);
  asio::awaitable<bool> subscribeStep(const common::Flow& flow, const common::Step& step);
  // Start barrier (Engine::subscribeFirst): the subscriptions of this user's life flow, each
  // confirmed by the broker, before any load; a failure is reported as the step's error.
  asio::awaitable<void> subscribeAhead();
  asio::awaitable<bool> subscribeAll(const common::Flow& flow,
                                     const std::vector<common::Step>& steps);
  // End of this user's life: on_end (keep or unsubscribe), then disconnect.
  asio::awaitable<void> closeMessaging();
  void reportMsgError(const common::Flow& flow, const common::Step& step, const std::string& where,
                      common::SteadyTime done);
  std::unique_ptr<MessagingSession> messaging;
  std::map<std::string, uint64_t> publish_seq; // per destination: this producer's sequence
  std::map<std::string, uint64_t> last_seq;    // per step and producer: the last seen
  std::vector<std::pair<std::string, std::string>> msg_properties;
  std::string msg_body;
  InMessage msg_in;
  bool unsubscribe_at_end = false;
  uint64_t reconnects_counted = 0; // of messaging->reconnects(), already in the stats
};

} // namespace stampede::worker
