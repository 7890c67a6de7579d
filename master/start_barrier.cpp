#include "master/start_barrier.h"

#include "common/load_plan.h"
#include "common/protocol.h"
#include "master/console.h"
#include "master/halt_policy.h"
#include "master/interrupt.h"

#include <fmt/format.h>

#include <map>

namespace stampede::master {
namespace {

using namespace std::chrono_literals;

constexpr auto kBarrierPoll = 20ms;

struct Confirmations {
  uint64_t confirmed = 0;
  uint64_t expected = 0;
  bool heard = false; // a Subscribed came: `expected` is known
  bool done() const { return heard && confirmed >= expected; }
};

} // namespace

std::optional<int> startBarrier(RunContext& run) {
  const common::Scenario& scenario = run.scenario;
  if (!common::needsStartBarrier(scenario))
    return std::nullopt;
  const auto timeout = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      *scenario.messaging->start_barrier);
  auto& cluster = run.cluster;
  wire::Envelope subscribe;
  subscribe.mutable_subscribe();
  cluster.broadcast(subscribe, {LinkState::Ready});
  const auto began = run.clock.now();
  const auto deadline = began + timeout;
  std::map<const WorkerLink*, Confirmations> by_worker;
  for (const auto* link : run.joined)
    by_worker[link];
  auto all_done = [&] {
    for (const auto& [link, c] : by_worker)
      if (!c.done())
        return false;
    return true;
  };
  std::optional<std::string> failure;
  while (!all_done() && !failure && run.early_errors.empty() && run.clock.now() < deadline &&
         !interrupted()) {
    cluster.heartbeat({LinkState::Ready});
    cluster.poll(kBarrierPoll, [&](WorkerLink& link, const wire::Envelope& e) {
      if (e.has_subscribed()) {
        auto& c = by_worker[&link];
        c.heard = true;
        c.confirmed = std::max(c.confirmed, e.subscribed().confirmed());
        c.expected = e.subscribed().expected();
      } else if (e.has_error()) {
        // The run loop judges it (halt.on_error), and the report has it.
        run.early_errors.emplace_back(&link, e);
      } else if (e.has_refused() && !failure) {
        failure = fmt::format("{}: refused: {}", workerLabel(link), e.refused().reason());
      }
    });
  }
  if (interrupted())
    return kExitInterrupted; // the caller's release frees the workers
  if (!run.early_errors.empty()) {
    const auto& [link, e] = run.early_errors.front();
    const auto& context = e.error().context();
    fmt::print(stderr, "stampede: start barrier: {}: {} on {} {}: {}\n", workerLabel(*link),
               context.error_kind(), context.method(), context.url(), printable(context.detail()));
    return std::nullopt;
  }
  if (!failure && !all_done()) {
    for (const auto& [link, c] : by_worker)
      if (!c.done()) {
        failure = c.heard
                      ? fmt::format("{}: {} of its {} subscriptions confirmed within {:.1f}s "
                                    "(messaging.start_barrier)",
                                    workerLabel(*link), c.confirmed, c.expected, seconds(timeout))
                      : fmt::format("{}: no word on its subscriptions within {:.1f}s "
                                    "(messaging.start_barrier)",
                                    workerLabel(*link), seconds(timeout));
        break;
      }
  }
  if (failure) {
    fmt::print(stderr, "stampede: start barrier: the run did not start: {}\n", *failure);
    return kExitFailed;
  }
  uint64_t subscriptions = 0;
  for (const auto& [link, c] : by_worker)
    subscriptions += c.confirmed;
  run.start_barrier_s = seconds(run.clock.now() - began);
  run.start_barrier_subscriptions = subscriptions;
  if (!run.cli.quiet)
    fmt::print("stampede: start barrier: {} subscription{} confirmed on {} worker{} in {:.3f}s\n",
               subscriptions, subscriptions == 1 ? "" : "s", run.joined.size(),
               run.joined.size() == 1 ? "" : "s", *run.start_barrier_s);
  return std::nullopt;
}

} // namespace stampede::master
