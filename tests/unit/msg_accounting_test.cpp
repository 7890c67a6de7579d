// Messaging accounting (issue 17): sequence ranges and their wire form, the queue ledger the
// master keeps over every worker's consumers, and the clock offsets re-measured during a run.
#include "common/clock_tracker.h"
#include "common/protocol.h"
#include "common/seq_ranges.h"
#include "master/queue_accounting.h"
#include "worker/queue_ledger.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <memory>

using namespace stampede;
using common::SeqRanges;

namespace {

std::vector<std::pair<uint64_t, uint64_t>> runsOf(const SeqRanges& r) {
  return {r.runs().begin(), r.runs().end()};
}

// A scenario whose one flow consumes from queue://q (stats index 1) after publishing to it (0).
common::Scenario queueScenario() {
  common::Scenario s;
  s.step_table = {{"PUBLISH queue://q", "PUBLISH"}, {"SUBSCRIBE queue://q", "SUBSCRIBE"}};
  common::Flow flow;
  common::Step publish;
  publish.kind = common::Step::Kind::Publish;
  publish.stats_index = 0;
  common::Step subscribe;
  subscribe.kind = common::Step::Kind::Subscribe;
  subscribe.stats_index = 1;
  auto spec = std::make_shared<common::SubscribeSpec>();
  spec->from.name = "q";
  subscribe.subscribe = spec;
  common::Step loop;
  loop.kind = common::Step::Kind::Loop;
  loop.steps = {subscribe};
  flow.steps = {publish, loop};
  s.flows = {flow};
  return s;
}

common::SteadyTime at(int seconds) {
  return common::SteadyTime(std::chrono::seconds(1000 + seconds));
}

} // namespace

TEST_CASE("sequence ranges merge runs and count what was there already", "[messaging]") {
  SeqRanges r;
  CHECK(r.add(1, 3) == 0);
  CHECK(r.add(5) == 0);
  CHECK(runsOf(r) == std::vector<std::pair<uint64_t, uint64_t>>{{1, 3}, {5, 5}});
  CHECK(r.add(4) == 0); // adjacent on both sides: one run
  CHECK(runsOf(r) == std::vector<std::pair<uint64_t, uint64_t>>{{1, 5}});
  CHECK(r.add(3, 8) == 3); // 3, 4, 5 again
  CHECK(r.size() == 8);
  CHECK(r.add(20, 22) == 0);
  CHECK(r.countIn(7, 21) == 4);
  CHECK(r.firstIn(9, 30) == 20u);
  CHECK_FALSE(r.firstIn(9, 19));
  CHECK(r.firstGap(1, 30) == std::make_pair(uint64_t(9), uint64_t(19)));
  CHECK(r.firstGap(21, 30) == std::make_pair(uint64_t(23), uint64_t(30)));
  CHECK_FALSE(r.firstGap(2, 8));
  CHECK(r.contains(21));
  CHECK_FALSE(r.contains(23));
}

TEST_CASE("sequence runs survive the wire and malformed ones are refused", "[messaging]") {
  SeqRanges r;
  r.add(1, 1000);
  r.add(1002);
  r.add(5000, 5001);
  wire::SeqRuns w;
  common::seqRunsToWire(r, w);
  CHECK(w.runs_size() == 6); // three runs, each two varints
  const auto back = common::seqRunsFromWire(w);
  REQUIRE(back);
  CHECK(*back == runsOf(r));

  wire::SeqRuns odd;
  odd.add_runs(1);
  CHECK_FALSE(common::seqRunsFromWire(odd));
  wire::SeqRuns empty_run;
  empty_run.add_runs(1);
  empty_run.add_runs(0);
  CHECK_FALSE(common::seqRunsFromWire(empty_run));
  wire::SeqRuns zero; // sequence numbers start at 1
  zero.add_runs(0);
  zero.add_runs(3);
  CHECK_FALSE(common::seqRunsFromWire(zero));
  wire::SeqRuns wraps;
  wraps.add_runs(UINT64_MAX);
  wraps.add_runs(2);
  CHECK_FALSE(common::seqRunsFromWire(wraps));
}

TEST_CASE("the master finds a message no worker's consumer took, and one taken twice",
          "[messaging]") {
  const auto scenario = queueScenario();
  master::QueueAccounting accounting(scenario);
  REQUIRE(accounting.any());

  // Worker 0's producer 0.7 had 1..10 confirmed; worker 0 took 1..4, worker 1 took 6..10.
  worker::QueueLedger w0, w1;
  for (uint64_t seq = 1; seq <= 10; ++seq)
    w0.confirmed(0, "queue://q", "0.7", seq);
  for (uint64_t seq = 1; seq <= 4; ++seq)
    w0.consumed(1, "queue://q", "0.7", seq, false);
  for (uint64_t seq = 6; seq <= 10; ++seq)
    w1.consumed(1, "queue://q", "0.7", seq, false);
  // A queue nobody in the scenario consumes from is not recorded by the workers (and ignored).
  wire::Stats s0, s1;
  w0.takeInto(s0);
  w1.takeInto(s1);
  CHECK(accounting.add(s0, at(1)).duplicates == 0);
  CHECK(accounting.add(s1, at(1)).duplicates == 0);

  // Worker 1 takes 7 again (a second copy, not flagged redelivered): a duplicate at once;
  // and 9 flagged redelivered: none.
  w1.consumed(1, "queue://q", "0.7", 7, false);
  w1.consumed(1, "queue://q", "0.7", 9, true);
  wire::Stats again;
  w1.takeInto(again);
  const auto added = accounting.add(again, at(2));
  CHECK(added.duplicates == 1);
  REQUIRE(added.first);
  CHECK(added.first->seq == 7);
  CHECK(added.first->producer == "0.7");

  // Confirmed later, right before the consumers stopped: 11 and 12, of which 12 was taken:
  // 11 was in flight, not lost.
  w0.confirmed(0, "queue://q", "0.7", 11);
  w0.confirmed(0, "queue://q", "0.7", 12);
  w1.consumed(1, "queue://q", "0.7", 12, false);
  // Producer 1.2 had 1..3 confirmed early, and nobody reached them: a backlog, still on the
  // queue; and 0.7's 13..15 too, past the last number of 0.7 taken.
  for (uint64_t seq = 1; seq <= 3; ++seq)
    w1.confirmed(0, "queue://q", "1.2", seq);
  wire::Stats late, late1;
  w0.takeInto(late);
  w1.takeInto(late1);
  accounting.add(late, at(9));
  accounting.add(late1, at(2));
  wire::Stats backlog;
  for (uint64_t seq = 13; seq <= 15; ++seq)
    w0.confirmed(0, "queue://q", "0.7", seq);
  w0.takeInto(backlog);
  accounting.add(backlog, at(3));

  const auto figures = accounting.judge(at(10));
  REQUIRE(figures.count(1));
  const auto& f = figures.at(1);
  CHECK(f.lost == 1);
  CHECK(f.duplicates == 1);
  CHECK(f.in_flight == 1);
  CHECK(f.queued == 6);
  CHECK(f.example == "message 5 of producer 0.7 on queue://q");

  common::StatsBook book(2);
  master::addQueueFigures(figures, book);
  CHECK(book.steps[1].errors_by_kind["message_lost"] == 1);
  CHECK(book.steps[1].errors_by_kind["message_duplicate"] == 1);
  CHECK(book.steps[1].counters["in_flight_at_end"] == 1);
  CHECK(book.steps[1].counters["queued_at_end"] == 6);
}

TEST_CASE("a worker takes a message twice within one Stats: the master hears it", "[messaging]") {
  const auto scenario = queueScenario();
  master::QueueAccounting accounting(scenario);
  worker::QueueLedger w;
  w.consumed(1, "queue://q", "1.0", 3, false);
  w.consumed(1, "queue://q", "1.0", 3, false);
  wire::Stats s;
  w.takeInto(s);
  const auto added = accounting.add(s, at(1));
  CHECK(added.duplicates == 1);
  REQUIRE(added.first);
  CHECK(added.first->seq == 3);
}

TEST_CASE("a drifting worker clock is tracked within the model's own error bound", "[clock]") {
  // The worker's clock: 300 ms ahead and 2 % fast.
  const double drift = 0.02;
  const int64_t skew = 300'000'000;
  const auto worker_at = [&](int64_t master_ns) {
    return master_ns + skew + int64_t(std::llround(drift * double(master_ns)));
  };
  common::ClockTracker tracker;
  // The handshake: a burst of quiet samples within milliseconds, round trips of 50 us.
  std::vector<common::ClockSample> burst;
  for (int i = 0; i < 10; ++i) {
    const int64_t t1 = i * 1'000'000;
    burst.push_back(common::ClockSample{t1, worker_at(t1 + 20'000), t1 + 50'000});
  }
  tracker.seed(burst);
  CHECK(tracker.samples() == 1);
  const auto handshake = tracker.model();
  CHECK(handshake.drift == 0); // no slope from samples a few ms apart
  CHECK(std::llabs(handshake.offset_ns - skew) <= handshake.error_ns);
  // One heartbeat a second, answered at once, through a busy run: round trips of 1 to 3 ms,
  // the answer anywhere inside them (the asymmetry the bound allows for).
  for (int s = 1; s <= 20; ++s) {
    const int64_t t1 = int64_t(s) * 1'000'000'000;
    const int64_t rtt = 1'000'000 + (s * 700'000) % 2'000'000;
    const int64_t t2 = worker_at(t1 + (s % 3) * rtt / 3);
    tracker.add(common::ClockExchange{t1, t2, t2 + 20'000, t1 + rtt + 20'000});
    const auto model = tracker.model();
    CHECK(model.error_ns > 0);
    // Within its bound at the next heartbeat and the one after, when the worker still uses it.
    for (const int64_t ahead : {int64_t(1'000'000'000), int64_t(2'000'000'000)}) {
      const int64_t t = t1 + ahead;
      const int64_t truth = worker_at(t) - t;
      INFO("second " << s << ", " << ahead << " ns ahead");
      CHECK(std::llabs(model.offsetAt(t) - truth) <= model.errorAt(t));
    }
  }
  const auto model = tracker.model();
  CHECK(model.drift == Approx(drift).epsilon(0.01));
  CHECK(tracker.samples() == common::ClockTracker::kWindow);
  // A stamp back on the master's clock, right to within the bound.
  const int64_t t = 21'500'000'000;
  CHECK(std::llabs(model.toMasterNs(worker_at(t)) - t) <= model.errorAt(t) + 1000);
  // The handshake's offset alone would be far off by now: 2 % of 21 s.
  CHECK(std::llabs(handshake.offsetAt(t) - (worker_at(t) - t)) > 400'000'000);
}

TEST_CASE("a clock exchange with a negative round trip is ignored", "[clock]") {
  common::ClockTracker tracker;
  tracker.add(common::ClockExchange{1000, 5000, 9000, 2000}); // the worker held it longer
  CHECK(tracker.samples() == 0);
  CHECK(tracker.model().error_ns == -1);
}
