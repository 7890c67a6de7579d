#include "common/protocol.h"

#include <catch2/catch.hpp>
#include <google/protobuf/util/message_differencer.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

using namespace stampede::common;
namespace wire = stampede::wire;

namespace {

constexpr double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};

// A worker's interval: steps 0 and 2 busy with latencies drawn from `rng`, step 1 idle.
StatsBook workerBook(uint64_t seed, double mean_us) {
  std::mt19937_64 rng(seed);
  std::exponential_distribution<double> latency(1.0 / mean_us);
  StatsBook book(3);
  for (const size_t step : {size_t(0), size_t(2)}) {
    StepStats& s = book.steps[step];
    s.requests = 5'000 + seed;
    s.errors = 40 + step;
    s.cancelled = 3;
    s.dropped = 7 * step;
    s.bytes_in = 1'234'567 * (step + 1);
    s.bytes_out = 98'765;
    s.errors_by_kind["http_500"] = 30;
    s.errors_by_kind["timeout"] = 10 + step;
    for (uint64_t i = 0; i < s.requests; ++i)
      s.latency_us.record(int64_t(std::llround(latency(rng))));
  }
  // One sample past 60 s exercises the overflow counter on the wire.
  book.steps[2].latency_us.record(61'000'000);
  return book;
}

wire::Stats toWire(const StatsBook& book) {
  wire::Stats out;
  statsToWire(book, out);
  return out;
}

void requireSameStep(const StepStats& got, const StepStats& want) {
  REQUIRE(got.requests == want.requests);
  REQUIRE(got.errors == want.errors);
  REQUIRE(got.cancelled == want.cancelled);
  REQUIRE(got.dropped == want.dropped);
  REQUIRE(got.bytes_in == want.bytes_in);
  REQUIRE(got.bytes_out == want.bytes_out);
  REQUIRE(got.errors_by_kind == want.errors_by_kind);
  REQUIRE(got.latency_us.count() == want.latency_us.count());
  REQUIRE(got.latency_us.overflow() == want.latency_us.overflow());
  REQUIRE(got.latency_us.minUs() == want.latency_us.minUs());
  REQUIRE(got.latency_us.maxUs() == want.latency_us.maxUs());
  REQUIRE(got.latency_us.sumUs() == want.latency_us.sumUs());
  for (const double p : kPercentiles)
    REQUIRE(got.latency_us.percentileUs(p) == want.latency_us.percentileUs(p));
}

void requireSameBook(const StatsBook& got, const StatsBook& want) {
  REQUIRE(got.steps.size() == want.steps.size());
  for (size_t i = 0; i < got.steps.size(); ++i)
    requireSameStep(got.steps[i], want.steps[i]);
}

wire::Envelope envelopeWith(const wire::Stats& stats) {
  wire::Envelope e;
  e.set_protocol(kProtocolVersion);
  e.set_run_id(77);
  e.set_seq(5);
  *e.mutable_stats() = stats;
  return e;
}

} // namespace

TEST_CASE("stats survive statsToWire, an envelope and statsFromWire unchanged", "[protocol]") {
  const StatsBook original = workerBook(1, 20'000);
  const std::string frame = encodeEnvelope(envelopeWith(toWire(original)));

  const auto decoded = decodeEnvelope(frame.data(), frame.size());
  REQUIRE(decoded.has_value());
  REQUIRE(decoded->has_stats());
  StatsBook master(3);
  REQUIRE(statsFromWire(decoded->stats(), 3, master));

  StatsBook expected(3);
  expected.merge(original);
  requireSameBook(master, expected);
}

TEST_CASE("a step's reconnect times alone cross the wire, merged by step", "[protocol]") {
  // A messaging step whose only news this second is a reconnect: not idle, not dropped.
  StatsBook book(2);
  book.steps[1].reconnect_us.record(1'250'000);
  book.steps[1].reconnect_us.record(40'000);
  const wire::Stats w = toWire(book);
  REQUIRE(w.steps_size() == 1);
  REQUIRE(w.steps(0).has_reconnect());

  StatsBook master(2);
  REQUIRE(statsFromWire(w, 2, master));
  REQUIRE(statsFromWire(w, 2, master));
  const auto& got = master.steps[1].reconnect_us;
  CHECK(got.count() == 4);
  CHECK(got.minUs() == 40'000);
  CHECK(got.maxUs() == book.steps[1].reconnect_us.maxUs());
  CHECK(master.steps[0].reconnect_us.count() == 0);
}

TEST_CASE("merging two workers' wire stats gives the exact percentiles of the union",
          "[protocol]") {
  // Different shapes, so that an average of per-worker percentiles would be visibly wrong.
  const StatsBook fast = workerBook(2, 2'000);
  const StatsBook slow = workerBook(3, 300'000);

  StatsBook master(3);
  REQUIRE(statsFromWire(toWire(fast), 3, master));
  REQUIRE(statsFromWire(toWire(slow), 3, master));

  StatsBook both(3);
  both.merge(fast);
  both.merge(slow);
  requireSameBook(master, both);
  REQUIRE(master.total().requests == fast.total().requests + slow.total().requests);
}

TEST_CASE("idle steps are left off the wire and stay empty on arrival", "[protocol]") {
  StatsBook book(5);
  book.steps[3].requests = 1;
  book.steps[3].latency_us.record(900);
  book.steps[1].bytes_in = 10; // bytes alone are activity too: nothing may be lost
  const wire::Stats w = toWire(book);
  REQUIRE(w.steps_size() == 2);
  REQUIRE(w.steps(0).step() == 1);
  REQUIRE_FALSE(w.steps(0).has_latency());
  REQUIRE(w.steps(1).step() == 3);

  StatsBook master(5);
  REQUIRE(statsFromWire(w, 5, master));
  requireSameBook(master, book);
}

TEST_CASE("statsFromWire grows a smaller book to the step count", "[protocol]") {
  StatsBook book(4);
  book.steps[3].requests = 2;
  StatsBook master;
  REQUIRE(statsFromWire(toWire(book), 4, master));
  REQUIRE(master.steps.size() == 4);
  REQUIRE(master.steps[3].requests == 2);
}

TEST_CASE("statsFromWire refuses an invalid message whole and leaves the book unchanged",
          "[protocol]") {
  StatsBook master(3);
  REQUIRE(statsFromWire(toWire(workerBook(4, 5'000)), 3, master));
  StatsBook before(3);
  before.merge(master);

  // A valid step first: a decoder that added as it went would already have changed the book.
  wire::Stats bad = toWire(workerBook(5, 5'000));
  REQUIRE(bad.steps_size() == 2);

  SECTION("a step index out of range") {
    bad.mutable_steps(1)->set_step(3);
  }
  SECTION("the same step twice") {
    bad.mutable_steps(1)->set_step(0);
  }
  SECTION("histogram counts that do not add up to its count") {
    bad.mutable_steps(1)->mutable_latency()->set_count(bad.steps(1).latency().count() + 1);
  }
  SECTION("a histogram of another layout") {
    bad.mutable_steps(1)->mutable_latency()->set_layout(Histogram::kLayoutId + 1);
  }
  SECTION("a histogram with a run of empty counters past the end") {
    bad.mutable_steps(1)->mutable_latency()->add_counts(-int64_t(Histogram::kCounterCount));
  }
  SECTION("a counter that would wrap") {
    bad.mutable_steps(1)->set_requests(std::numeric_limits<uint64_t>::max());
  }
  SECTION("an error kind whose count would wrap") {
    (*bad.mutable_steps(1)->mutable_errors_by_kind())["timeout"] =
        std::numeric_limits<uint64_t>::max();
  }
  SECTION("a latency sum that would wrap") {
    // Found by tests/fuzz/stats_fuzz: valid alone (a value past kMaxTrackableUs counts as
    // overflow but still adds to the sum), it wrapped the master's sum to a negative mean.
    StatsBook huge(3);
    huge.steps[0].requests = 1;
    huge.steps[0].latency_us.record(std::numeric_limits<int64_t>::max() -
                                    master.steps[0].latency_us.sumUs() / 2);
    bad = toWire(huge);
  }
  SECTION("more steps than the scenario has") {
    for (uint32_t i = 0; i < 3; ++i)
      bad.add_steps()->set_step(i);
  }

  REQUIRE_FALSE(statsFromWire(bad, 3, master));
  requireSameBook(master, before);
}

TEST_CASE("every message kind survives encode and decode", "[protocol]") {
  std::vector<std::function<void(wire::Envelope&)>> fill = {
      [](wire::Envelope& e) { e.mutable_probe()->set_master_ns(123); },
      [](wire::Envelope& e) {
        auto& h = *e.mutable_hello();
        h.set_protocol(kProtocolVersion);
        h.set_build("1.2.3");
        h.set_cores(8);
        h.set_threads(4);
        h.set_master_ns(-5);
        h.set_worker_ns(99);
      },
      [](wire::Envelope& e) {
        auto& w = *e.mutable_welcome();
        w.set_worker_index(2);
        w.set_worker_count(3);
        w.set_clock_offset_ns(-1'000'000);
        w.set_heartbeat_timeout_ms(3000);
      },
      [](wire::Envelope& e) {
        auto& p = *e.mutable_prepare();
        p.set_scenario_yaml("name: x\n");
        p.set_scenario_file("x.yaml");
        (*p.mutable_files())["users.csv"] = std::string("a,b\n\0\xff", 6);
        p.set_first_vu(50);
        p.set_duration_us(5'000'000);
        (*p.mutable_env())["TOKEN"] = "s3cret";
      },
      [](wire::Envelope& e) { e.mutable_ready(); },
      [](wire::Envelope& e) { e.mutable_start()->set_start_master_ns(1'000'000'000); },
      [](wire::Envelope& e) {
        auto& s = *e.mutable_stats();
        statsToWire(workerBook(6, 1'000), s);
        s.set_interval(4);
        s.set_at_master_ns(42);
        s.set_active_users(10);
      },
      [](wire::Envelope& e) {
        ErrorContext error;
        error.status = 503;
        error.headers = {{"retry-after", "1"}};
        errorToWire(error, 0, *e.mutable_error()->mutable_context());
      },
      [](wire::Envelope& e) {
        e.mutable_halt()->set_reason(wire::HALT_REASON_FIRST_ERROR);
        e.mutable_halt()->set_first_error_master_ns(123'456'789);
      },
      [](wire::Envelope& e) { e.mutable_stop(); },
      [](wire::Envelope& e) {
        auto& f = *e.mutable_final();
        statsToWire(workerBook(7, 1'000), *f.mutable_stats());
        f.mutable_sent_after_first_error()->set_requests(12);
        f.mutable_sent_after_first_error()->set_last_send_master_ns(-5);
        f.mutable_sent_after_first_error()->set_complete(true);
        f.set_halted(true);
        f.set_stopped_master_ns(77);
      },
      [](wire::Envelope& e) { e.mutable_final_ack(); },
      [](wire::Envelope& e) { e.mutable_heartbeat()->set_sent_ns(8); },
      [](wire::Envelope& e) { e.mutable_busy()->set_reason("serving master at 10.0.0.1"); },
      [](wire::Envelope& e) { e.mutable_refused()->set_reason("bad scenario"); },
      [](wire::Envelope& e) { e.mutable_error_tally()->set_errors(3); },
      [](wire::Envelope& e) {
        auto& r = *e.mutable_set_rate();
        r.set_probe(4);
        r.set_rate(187.5);
        r.set_start_master_ns(3'000'000'000);
        r.set_end_master_ns(5'000'000'000);
      },
      [](wire::Envelope& e) {
        auto& r = *e.mutable_reshare();
        r.set_rate_share(1.0 / 3);
        r.set_max_in_flight(20);
        r.set_worker_count(3);
        r.set_from_ns(4'000'000'000);
        r.add_retire_users(4);
        r.add_retire_users(5);
      },
      [](wire::Envelope& e) { e.mutable_subscribe(); },
      [](wire::Envelope& e) {
        e.mutable_subscribed()->set_confirmed(3);
        e.mutable_subscribed()->set_expected(4);
      },
  };
  std::vector<int> kinds;
  for (const auto& f : fill) {
    wire::Envelope sent;
    sent.set_protocol(kProtocolVersion);
    sent.set_run_id(0xfeedface);
    sent.set_seq(kinds.size() + 1);
    f(sent);
    const std::string frame = encodeEnvelope(sent);
    const auto got = decodeEnvelope(frame.data(), frame.size());
    REQUIRE(got.has_value());
    REQUIRE(google::protobuf::util::MessageDifferencer::Equals(*got, sent));
    kinds.push_back(int(got->body_case()));
  }
  // Every kind of the oneof, once: a message added to the proto must be added here.
  std::sort(kinds.begin(), kinds.end());
  REQUIRE(std::unique(kinds.begin(), kinds.end()) == kinds.end());
  REQUIRE(int(kinds.size()) == wire::Envelope::GetDescriptor()->oneof_decl(0)->field_count());
}

TEST_CASE("decodeEnvelope refuses an envelope without a body, empty input and oversize input",
          "[protocol]") {
  wire::Envelope no_body;
  no_body.set_protocol(kProtocolVersion);
  no_body.set_seq(1);
  const std::string frame = encodeEnvelope(no_body);
  REQUIRE_FALSE(decodeEnvelope(frame.data(), frame.size()).has_value());
  REQUIRE_FALSE(decodeEnvelope(frame.data(), 0).has_value());
  REQUIRE_FALSE(decodeEnvelope(nullptr, 0).has_value());

  // A well-formed Busy, but longer than any peer may send.
  std::string big;
  {
    wire::Envelope busy;
    busy.mutable_busy()->set_reason(std::string(size_t(kMaxMessageBytes), 'x'));
    big = encodeEnvelope(busy);
  }
  REQUIRE(big.size() > size_t(kMaxMessageBytes));
  REQUIRE_FALSE(decodeEnvelope(big.data(), big.size()).has_value());
}

TEST_CASE("decodeEnvelope survives random and truncated frames", "[protocol]") {
  wire::Envelope real = envelopeWith(toWire(workerBook(8, 3'000)));
  const std::string frame = encodeEnvelope(real);
  std::mt19937_64 rng(20240601);
  std::uniform_int_distribution<int> byte(0, 255);
  size_t accepted = 0;
  for (int i = 0; i < 10'000; ++i) {
    std::string buf;
    switch (i % 3) {
    case 0: { // random bytes
      buf.resize(std::uniform_int_distribution<size_t>(0, 300)(rng));
      for (char& c : buf)
        c = char(byte(rng));
      break;
    }
    case 1: // a real frame cut short
      buf = frame.substr(0, std::uniform_int_distribution<size_t>(0, frame.size())(rng));
      break;
    default: { // a real frame with a few bytes flipped
      buf = frame;
      for (int k = 0; k < 4; ++k)
        buf[std::uniform_int_distribution<size_t>(0, buf.size() - 1)(rng)] = char(byte(rng));
    }
    }
    const auto got = decodeEnvelope(buf.data(), buf.size());
    if (!got)
      continue;
    ++accepted;
    REQUIRE(got->body_case() != wire::Envelope::BODY_NOT_SET);
    // Whatever parsed must not crash the stats path either; it may well be refused.
    if (got->has_stats()) {
      StatsBook master(3);
      statsFromWire(got->stats(), 3, master);
    }
  }
  // The fuzzing reached the accepting path too, not only the refusals.
  REQUIRE(accepted > 0);
}

TEST_CASE("SequenceFilter accepts only increasing sequence numbers and counts the rest",
          "[protocol]") {
  SequenceFilter filter;
  REQUIRE_FALSE(filter.accept(0)); // sequence numbers start at 1
  REQUIRE(filter.accept(1));
  REQUIRE(filter.accept(2));
  REQUIRE_FALSE(filter.accept(2)); // duplicate
  REQUIRE_FALSE(filter.accept(1)); // stale
  REQUIRE(filter.accept(10));      // a gap is a lost message, not a reason to refuse
  REQUIRE_FALSE(filter.accept(9));
  REQUIRE(filter.dropped() == 4);

  filter.reset();
  REQUIRE(filter.dropped() == 0);
  REQUIRE(filter.accept(1));
}

TEST_CASE("estimateOffset takes the offset from the sample with the smallest round trip",
          "[protocol]") {
  constexpr int64_t kOffset = 7'654'321; // worker clock minus master clock
  constexpr int64_t kBase = 1'000'000'000'000;
  // Each sample: out and back delays; the worker answers instantly.
  const auto sample = [](int64_t send, int64_t out_ns, int64_t back_ns) {
    return ClockSample{send, send + out_ns + kOffset, send + out_ns + back_ns};
  };
  const std::vector<ClockSample> samples = {
      sample(kBase, 5'000'000, 200'000),            // slow, asymmetric: 2.4 ms off
      sample(kBase + 10'000'000, 150'000, 150'000), // the min-RTT one, symmetric
      sample(kBase + 20'000'000, 100'000, 900'000),
      sample(kBase + 30'000'000, 150'000, 150'000), // a tie: the first one wins
      sample(kBase + 40'000'000, 2'000'000, 0),
  };
  const ClockEstimate estimate = estimateOffset(samples);
  REQUIRE(estimate.offset_ns == kOffset);
  REQUIRE(estimate.rtt_ns == 300'000);

  // Any order: the choice is by round trip, not position.
  std::vector<ClockSample> reversed(samples.rbegin(), samples.rend());
  REQUIRE(estimateOffset(reversed).offset_ns == kOffset);

  // A negative offset and a worker clock far behind come out the same way.
  const ClockSample behind{kBase, kBase - 3'000'000'000 + 50'000, kBase + 100'000};
  REQUIRE(estimateOffset(std::span(&behind, 1)).offset_ns == -3'000'000'000);
}

TEST_CASE("estimateOffset ignores samples received before they were sent", "[protocol]") {
  REQUIRE(estimateOffset({}).rtt_ns == -1);
  const ClockSample broken{100, 50, 90};
  REQUIRE(estimateOffset(std::span(&broken, 1)).rtt_ns == -1);
  const std::vector<ClockSample> mixed = {broken, {100, 160, 120}};
  const ClockEstimate estimate = estimateOffset(mixed);
  REQUIRE(estimate.rtt_ns == 20);
  REQUIRE(estimate.offset_ns == 50);
}

TEST_CASE("an error context travels with its time moved to the master's clock", "[protocol]") {
  constexpr int64_t kOffset = -2'500'000; // the worker's clock is 2.5 ms behind
  const SteadyTime master_time = fromSteadyNs(9'000'000'000);
  ErrorContext error;
  error.worker_index = 2;
  error.vu = 1234;
  error.flow = "checkout";
  error.step = "pay";
  error.method = "POST";
  error.url = "http://shop/pay?token=***";
  error.status = 502;
  error.error_kind = "http_502";
  error.detail = "expected status 200";
  error.headers = {{"content-type", "text/html"}, {"server", "nginx"}};
  error.body = std::string(5000, 'b');
  error.at = master_time + std::chrono::nanoseconds(kOffset);
  error.wall_at =
      std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));

  wire::ErrorContext w;
  errorToWire(error, kOffset, w);
  REQUIRE(w.at_master_ns() == steadyNs(master_time));
  REQUIRE(w.body().size() == kMaxErrorBodyBytes);

  const ErrorContext got = errorFromWire(w);
  REQUIRE(got.at == master_time);
  REQUIRE(got.wall_at == error.wall_at);
  REQUIRE(got.worker_index == 2);
  REQUIRE(got.vu == 1234);
  REQUIRE(got.flow == "checkout");
  REQUIRE(got.step == "pay");
  REQUIRE(got.method == "POST");
  REQUIRE(got.url == error.url);
  REQUIRE(got.status == 502);
  REQUIRE(got.error_kind == "http_502");
  REQUIRE(got.detail == error.detail);
  REQUIRE(got.headers == error.headers);
  REQUIRE(got.body == error.body.substr(0, kMaxErrorBodyBytes));
}

TEST_CASE("errorFromWire cuts a peer's oversized body and survives extreme times", "[protocol]") {
  wire::ErrorContext w;
  w.set_body(std::string(100'000, 'z'));
  w.set_wall_ms(std::numeric_limits<int64_t>::max());
  w.set_at_master_ns(std::numeric_limits<int64_t>::min());
  const ErrorContext got = errorFromWire(w);
  REQUIRE(got.body.size() == kMaxErrorBodyBytes);
}

TEST_CASE("steady time round-trips through nanoseconds", "[protocol]") {
  const SteadyTime now = std::chrono::steady_clock::now();
  REQUIRE(fromSteadyNs(steadyNs(now)) == now);
  REQUIRE(steadyNs(fromSteadyNs(-42)) == -42);
}
