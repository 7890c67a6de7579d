// control_fuzz: throws hostile input at a worker's control port (issue 5, "Hostile input on the
// control port"), then checks that the worker still answers a well-behaved peer.
//
//   control_fuzz --endpoint tcp://127.0.0.1:P [--count 10000] [--seed S] [--max-seconds 12]
//                [--no-oversize] [--no-check]
//
// What it sends, --count messages in all (a multi-part message or one raw TCP connection counts
// as one), from one seed so that a failure can be replayed:
//   * from a DEALER, from a "walker" DEALER that drives the handshake far enough for a Prepare
//     to be parsed, and from a few fresh DEALERs with random routing ids (replaced now and
//     then): random bytes, empty frames, multi-part junk, valid envelopes with wrong run ids,
//     random sequence numbers, wrong protocol versions and every body type with random
//     contents (Stats with garbage histograms, Prepare with garbage or invalid YAML and random
//     files...), the same truncated at a random length or with random bits flipped;
//   * once, frames of 64 MiB + 1 and 65 MiB (over the worker's ZMQ_MAXMSGSIZE) and one of
//     exactly 64 MiB, each from a DEALER of its own;
//   * over plain TCP sockets: random bytes, truncated ZMTP greetings, greetings naming other
//     mechanisms (CURVE, PLAIN, junk), a NULL handshake followed by garbage commands, frames
//     that claim 2^40 or 2^63 bytes, truncated frames.
// No Prepare it sends can validate (the YAML is garbage, or has no `flows` section, which no
// bit flip can add): the worker never starts load because of this program.
//
// It stops after --count messages or --max-seconds, whichever comes first. Then (unless
// --no-check) it probes the worker as a master would (Probe, expecting Hello; Busy while the
// worker still serves a peer of the fuzz phase, until that peer's heartbeat timeout frees it)
// and releases it again with a Stop, for at most 8 s.
//
// Exit codes: 0 done (and the worker answered the check); 1 the worker did not answer the
// check; 2 usage. Only endpoints on 127.0.0.0/8 are accepted.

#include "common/protocol.h"
#include "stampede.pb.h"

#include <fmt/core.h>
#include <google/protobuf/stubs/common.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <poll.h>
#include <random>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>
#include <vector>

#if GOOGLE_PROTOBUF_VERSION < 4022000
#include <google/protobuf/stubs/logging.h>
#define CONTROL_FUZZ_SILENCE_PROTOBUF 1
#endif

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace wire = stampede::wire;
using stampede::common::kMaxMessageBytes;
using stampede::common::kProtocolVersion;

struct Options {
  std::string endpoint;
  uint64_t count = 10000;
  uint64_t seed = 1;
  double max_seconds = 12;
  bool oversize = true;
  bool check = true;
};

struct Target {
  in_addr address{};
  uint16_t port = 0;
};

// --------------------------------------------------------------------------------------------
// Randomness

class Random {
public:
  explicit Random(uint64_t seed) : engine_(seed) {}

  uint64_t u64() { return engine_(); }
  // Uniform in [lo, hi].
  uint64_t range(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(engine_);
  }
  bool chance(double p) { return std::bernoulli_distribution(p)(engine_); }
  template <typename T> const T& pick(const std::vector<T>& items) {
    return items[range(0, items.size() - 1)];
  }
  // A size that is usually small and sometimes not.
  size_t size(size_t max) {
    switch (range(0, 3)) {
    case 0:
      return range(0, std::min<size_t>(max, 16));
    case 1:
      return range(0, std::min<size_t>(max, 256));
    case 2:
      return range(0, std::min<size_t>(max, 4096));
    default:
      return range(0, max);
    }
  }
  std::string bytes(size_t n) {
    std::string out(n, '\0');
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const uint64_t word = engine_();
      std::memcpy(out.data() + i, &word, 8);
    }
    for (; i < n; ++i)
      out[i] = char(engine_());
    return out;
  }
  std::string printable(size_t n) {
    static constexpr std::string_view kChars =
        "abcdefghijklmnopqrstuvwxyz0123456789 :-_./{}[]()\"'#&*!|>%@`,?\n\t";
    std::string out(n, ' ');
    for (auto& c : out)
      c = kChars[range(0, kChars.size() - 1)];
    return out;
  }
  // Valid UTF-8 of about n bytes: any code point (controls and NUL included) but surrogates.
  std::string utf8(size_t n) {
    std::string out;
    while (out.size() < n) {
      uint32_t cp;
      switch (range(0, 3)) {
      case 0:
        cp = uint32_t(range(0, 0x7f));
        break;
      case 1:
        cp = uint32_t(range(0x80, 0x7ff));
        break;
      case 2:
        cp = uint32_t(range(0x800, 0xffff));
        if (cp >= 0xd800 && cp <= 0xdfff)
          cp = 0xfffd;
        break;
      default:
        cp = uint32_t(range(0x10000, 0x10ffff));
        break;
      }
      if (cp < 0x80) {
        out += char(cp);
      } else if (cp < 0x800) {
        out += char(0xc0 | (cp >> 6));
        out += char(0x80 | (cp & 0x3f));
      } else if (cp < 0x10000) {
        out += char(0xe0 | (cp >> 12));
        out += char(0x80 | ((cp >> 6) & 0x3f));
        out += char(0x80 | (cp & 0x3f));
      } else {
        out += char(0xf0 | (cp >> 18));
        out += char(0x80 | ((cp >> 12) & 0x3f));
        out += char(0x80 | ((cp >> 6) & 0x3f));
        out += char(0x80 | (cp & 0x3f));
      }
    }
    return out;
  }
  // For a protobuf `string` field: mostly valid UTF-8 (which reaches the handlers), sometimes
  // not (which the parser must refuse).
  std::string text(size_t n) {
    const uint64_t roll = range(0, 9);
    return roll < 6 ? utf8(n) : roll < 9 ? printable(n) : bytes(n);
  }
  // A value worth trying for a 64-bit integer field: edges and random bits.
  uint64_t edgy64() {
    switch (range(0, 6)) {
    case 0:
      return 0;
    case 1:
      return 1;
    case 2:
      return std::numeric_limits<uint64_t>::max();
    case 3:
      return uint64_t(std::numeric_limits<int64_t>::max());
    case 4:
      return uint64_t(std::numeric_limits<int64_t>::min());
    case 5:
      return range(0, 1000);
    default:
      return u64();
    }
  }
  int64_t edgyI64() { return int64_t(edgy64()); }
  uint32_t edgy32() { return uint32_t(edgy64() >> (chance(0.5) ? 32 : 0)); }

private:
  std::mt19937_64 engine_;
};

// --------------------------------------------------------------------------------------------
// Envelopes

// YAML for Prepare. None of these can become a valid scenario, whatever bits are flipped later:
// either it is not a scenario at all or it has no `flows` section.
std::string garbageYaml(Random& rng) {
  switch (rng.range(0, 9)) {
  case 0:
    return rng.text(rng.size(2048));
  case 1:
    return rng.printable(rng.size(2048));
  case 2:
    return "";
  case 3:
    // A scenario without flows, aimed at a closed loopback port.
    return "name: fuzz\ntarget: http://127.0.0.1:9\nload:\n  users: 1\n  duration: 1s\n";
  case 4:
    return "name: fuzz\ntarget: http://127.0.0.2:9\nload: {users: 1, duration: 1s}\n"
           "http: {timeout: 1s}\nvariables: {a: 1}\n";
  case 5: {
    // Deep nesting: a parser that recurses without a limit would run out of stack.
    const size_t depth = rng.range(1, 3000);
    return "name: " + std::string(depth, '[') + std::string(depth, ']') + "\n";
  }
  case 6: {
    // Aliases a few levels deep (a small "billion laughs": 10^4 leaves at most).
    std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i < 4; ++i)
      text += fmt::format("a{0}: &a{0} [*a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, *a{1}, "
                          "*a{1}, *a{1}]\n",
                          i, i - 1);
    return text + "name: *a3\n";
  }
  case 7:
    return "name: fuzz\ntarget: {{env(\"HOME\")}}\nload: {users: " + std::to_string(rng.edgyI64()) +
           ", duration: " + rng.printable(8) + "}\n";
  case 8:
    return "- " + rng.printable(rng.size(256)) + "\n- *undefined_alias\n";
  default:
    return "%YAML 9.9\n--- !!binary " + rng.printable(64) + "\n... \n---\n" + rng.bytes(32);
  }
}

void randomHistogram(Random& rng, wire::Histogram& h) {
  h.set_layout(rng.chance(0.5) ? uint32_t(rng.range(0, 3)) : rng.edgy32());
  const size_t n = rng.size(2000);
  for (size_t i = 0; i < n; ++i)
    h.add_counts(rng.chance(0.3) ? -int64_t(rng.range(0, 1u << 20)) : rng.edgyI64());
  h.set_count(rng.edgy64());
  h.set_overflow(rng.edgy64());
  h.set_min_us(rng.edgyI64());
  h.set_max_us(rng.edgyI64());
  h.set_sum_us(rng.edgyI64());
}

void randomStats(Random& rng, wire::Stats& s) {
  s.set_interval(rng.edgy64());
  s.set_at_master_ns(rng.edgyI64());
  s.set_active_users(rng.edgy32());
  const size_t steps = rng.range(0, 8);
  for (size_t i = 0; i < steps; ++i) {
    auto* step = s.add_steps();
    step->set_step(rng.chance(0.7) ? uint32_t(rng.range(0, 4)) : rng.edgy32());
    step->set_requests(rng.edgy64());
    step->set_errors(rng.edgy64());
    step->set_cancelled(rng.edgy64());
    step->set_dropped(rng.edgy64());
    step->set_bytes_in(rng.edgy64());
    step->set_bytes_out(rng.edgy64());
    for (size_t k = rng.range(0, 3); k > 0; --k)
      (*step->mutable_errors_by_kind())[rng.printable(rng.range(0, 12))] = rng.edgy64();
    if (rng.chance(0.8))
      randomHistogram(rng, *step->mutable_latency());
  }
}

void randomErrorContext(Random& rng, wire::ErrorContext& e) {
  e.set_worker(rng.edgy32());
  e.set_vu(rng.edgy64());
  e.set_flow(rng.text(rng.size(64)));
  e.set_step(rng.text(rng.size(64)));
  e.set_method(rng.text(rng.range(0, 8)));
  e.set_url(rng.text(rng.size(256)));
  e.set_status(int32_t(rng.edgy32()));
  e.set_error_kind(rng.printable(rng.range(0, 16)));
  e.set_detail(rng.text(rng.size(256)));
  for (size_t i = rng.range(0, 4); i > 0; --i) {
    auto* h = e.add_headers();
    h->set_name(rng.printable(rng.range(0, 16)));
    h->set_value(rng.text(rng.range(0, 64)));
  }
  e.set_body(rng.bytes(rng.size(8192)));
  e.set_at_master_ns(rng.edgyI64());
  e.set_wall_ms(rng.edgyI64());
}

constexpr int kBodyKinds = 16;

// Fills one body of kind `kind` (0..15, in the order of the oneof) with random contents.
void randomBody(Random& rng, int kind, wire::Envelope& env) {
  switch (kind) {
  case 0:
    env.mutable_probe()->set_master_ns(rng.edgyI64());
    break;
  case 1: {
    auto* h = env.mutable_hello();
    h->set_protocol(rng.chance(0.5) ? kProtocolVersion : rng.edgy32());
    h->set_build(rng.text(rng.size(32)));
    h->set_cores(rng.edgy32());
    h->set_threads(rng.edgy32());
    h->set_master_ns(rng.edgyI64());
    h->set_worker_ns(rng.edgyI64());
    break;
  }
  case 2: {
    auto* w = env.mutable_welcome();
    w->set_worker_index(rng.edgy32());
    w->set_worker_count(rng.edgy32());
    w->set_clock_offset_ns(rng.edgyI64());
    // Once welcomed, the worker waits the master's timeout (up to 10 min) for a silent master:
    // kept within the final check's budget, so that the last fuzzed session ends in time.
    w->set_heartbeat_timeout_ms(rng.chance(0.5) ? uint32_t(rng.range(0, 5000))
                                                : std::min<uint32_t>(rng.edgy32(), 5000));
    break;
  }
  case 3: {
    auto* p = env.mutable_prepare();
    p->set_scenario_yaml(garbageYaml(rng));
    p->set_scenario_file(rng.chance(0.5) ? "fuzz.yaml" : rng.text(rng.size(64)));
    for (size_t i = rng.range(0, 3); i > 0; --i)
      (*p->mutable_files())[rng.printable(rng.range(0, 24))] = rng.bytes(rng.size(65536));
    p->set_first_vu(rng.edgy64());
    p->set_duration_us(rng.edgyI64());
    for (size_t i = rng.range(0, 3); i > 0; --i)
      (*p->mutable_env())[rng.text(rng.range(0, 16))] = rng.text(rng.size(64));
    break;
  }
  case 4:
    env.mutable_ready();
    break;
  case 5:
    env.mutable_start()->set_start_master_ns(rng.edgyI64());
    break;
  case 6:
    randomStats(rng, *env.mutable_stats());
    break;
  case 7:
    randomErrorContext(rng, *env.mutable_error()->mutable_context());
    break;
  case 8:
    env.mutable_halt()->set_reason(wire::HaltReason(rng.edgy32() % 9));
    env.mutable_halt()->set_first_error_master_ns(rng.edgyI64());
    break;
  case 9:
    env.mutable_stop();
    break;
  case 10: {
    auto* f = env.mutable_final();
    randomStats(rng, *f->mutable_stats());
    if (rng.chance(0.5)) {
      f->mutable_sent_after_first_error()->set_requests(rng.edgy64());
      f->mutable_sent_after_first_error()->set_last_send_master_ns(rng.edgyI64());
      f->mutable_sent_after_first_error()->set_complete(rng.chance(0.5));
    }
    f->set_halted(rng.chance(0.5));
    f->set_stopped_master_ns(rng.edgyI64());
    break;
  }
  case 11:
    env.mutable_final_ack();
    break;
  case 12:
    env.mutable_heartbeat()->set_sent_ns(rng.edgyI64());
    break;
  case 13:
    env.mutable_busy()->set_reason(rng.text(rng.size(128)));
    break;
  case 14:
    env.mutable_refused()->set_reason(rng.text(rng.size(128)));
    break;
  default:
    env.mutable_error_tally()->set_errors(rng.edgy64());
    break;
  }
}

// What a DEALER has told the worker so far, so that some envelopes carry a plausible run id.
struct PeerState {
  uint64_t seq = 0;                  // last sequence number sent in order
  uint64_t max_seq = 0;              // highest sequence number sent at all
  uint64_t run_id = 0;               // run id of the last Welcome sent
  std::vector<uint64_t> welcome_ids; // run ids of recent Welcomes (for a release)

  void sent(const wire::Envelope& env) {
    max_seq = std::max(max_seq, env.seq());
    if (env.has_welcome()) {
      run_id = env.run_id();
      welcome_ids.push_back(env.run_id());
      if (welcome_ids.size() > 16)
        welcome_ids.erase(welcome_ids.begin());
    }
  }
};

wire::Envelope randomEnvelope(Random& rng, PeerState& peer) {
  wire::Envelope env;
  env.set_protocol(rng.chance(0.85) ? kProtocolVersion : rng.edgy32());
  switch (rng.range(0, 4)) {
  case 0:
    env.set_run_id(0);
    break;
  case 1:
    env.set_run_id(peer.run_id);
    break;
  case 2:
    env.set_run_id(peer.run_id + 1);
    break;
  default:
    env.set_run_id(rng.edgy64());
    break;
  }
  switch (rng.range(0, 4)) {
  case 0:
    env.set_seq(0);
    break;
  case 1:
  case 2:
    env.set_seq(++peer.seq);
    break;
  case 3:
    env.set_seq(peer.seq); // a duplicate
    break;
  default:
    env.set_seq(rng.edgy64());
    break;
  }
  const int kind = int(rng.range(0, kBodyKinds - 1));
  randomBody(rng, kind, env);
  return env;
}

std::string bitFlipped(Random& rng, std::string bytes) {
  if (bytes.empty())
    return rng.bytes(rng.range(1, 16));
  const size_t flips = rng.range(1, 8);
  for (size_t i = 0; i < flips; ++i) {
    const size_t at = rng.range(0, bytes.size() - 1);
    bytes[at] = char(uint8_t(bytes[at]) ^ (1u << rng.range(0, 7)));
  }
  return bytes;
}

// --------------------------------------------------------------------------------------------
// Raw TCP (no ZeroMQ on our side)

std::string zmtpGreeting(std::string_view mechanism, uint8_t major = 3, uint8_t minor = 0) {
  std::string g;
  g += char(0xff);
  g += std::string(8, '\0');
  g += char(0x7f);
  g += char(major);
  g += char(minor);
  std::string mech(mechanism.substr(0, 20));
  mech.resize(20, '\0');
  g += mech;
  g += '\0'; // as-server
  g += std::string(31, '\0');
  return g; // 64 bytes
}

std::string zmtpCommand(std::string_view name, const std::string& data) {
  std::string body;
  body += char(name.size());
  body += name;
  body += data;
  std::string frame;
  if (body.size() < 256) {
    frame += char(0x04);
    frame += char(body.size());
  } else {
    frame += char(0x06);
    for (int shift = 56; shift >= 0; shift -= 8)
      frame += char(uint64_t(body.size()) >> shift);
  }
  return frame + body;
}

std::string zmtpProperty(std::string_view name, std::string_view value) {
  std::string p;
  p += char(name.size());
  p += name;
  const uint32_t n = uint32_t(value.size());
  p += char(n >> 24);
  p += char(n >> 16);
  p += char(n >> 8);
  p += char(n);
  p += value;
  return p;
}

// A message frame header claiming `size` bytes (flags: more, long as needed).
std::string zmtpFrameHeader(uint64_t size, bool more, bool force_long = false) {
  std::string h;
  const bool is_long = force_long || size > 255;
  h += char((more ? 0x01 : 0x00) | (is_long ? 0x02 : 0x00));
  if (is_long) {
    for (int shift = 56; shift >= 0; shift -= 8)
      h += char(size >> shift);
  } else {
    h += char(size);
  }
  return h;
}

std::string rawPayload(Random& rng, const std::string& some_envelope) {
  const std::string null_greeting = zmtpGreeting("NULL");
  auto ready = [&](std::string_view type) {
    std::string props = zmtpProperty("Socket-Type", type);
    if (rng.chance(0.5))
      props += zmtpProperty("Identity", rng.chance(0.5) ? "" : rng.bytes(rng.range(1, 255)));
    return zmtpCommand("READY", props);
  };
  switch (rng.range(0, 9)) {
  case 0:
    return rng.bytes(rng.size(4096));
  case 1: // a truncated greeting
    return null_greeting.substr(0, rng.range(0, null_greeting.size() - 1));
  case 2: { // another mechanism, or junk in its place
    static const std::vector<std::string> kMechanisms = {"CURVE", "PLAIN", "GSSAPI", "NULLX", ""};
    std::string g = zmtpGreeting(rng.chance(0.8) ? rng.pick(kMechanisms) : rng.bytes(20));
    return g + rng.bytes(rng.size(512));
  }
  case 3: { // an odd version
    std::string g = zmtpGreeting("NULL", uint8_t(rng.range(0, 255)), uint8_t(rng.range(0, 255)));
    return g + rng.bytes(rng.size(256));
  }
  case 4: // NULL handshake, then garbage commands
    return null_greeting + zmtpCommand(rng.printable(rng.range(0, 12)), rng.bytes(rng.size(300)));
  case 5: { // READY with a socket type a ROUTER may or may not accept
    static const std::vector<std::string> kTypes = {"DEALER", "REQ",  "ROUTER", "PUB",
                                                    "SUB",    "PUSH", "PAIR",   ""};
    return null_greeting + ready(rng.chance(0.8) ? rng.pick(kTypes) : rng.bytes(rng.range(0, 40)));
  }
  case 6: { // a frame that claims to be enormous
    const uint64_t claims[] = {uint64_t(kMaxMessageBytes) + 1, uint64_t(1) << 40, uint64_t(1) << 63,
                               std::numeric_limits<uint64_t>::max()};
    return null_greeting + ready("DEALER") +
           zmtpFrameHeader(claims[rng.range(0, 3)], rng.chance(0.3), true) + rng.bytes(64);
  }
  case 7: { // a truncated frame: the header promises more than follows
    const uint64_t size = rng.range(1, 100000);
    return null_greeting + ready("DEALER") + zmtpFrameHeader(size, false) +
           rng.bytes(rng.range(0, size - 1));
  }
  case 8: { // well-formed frames carrying an envelope, possibly damaged, then garbage
    std::string payload = rng.chance(0.5) ? some_envelope : bitFlipped(rng, some_envelope);
    return null_greeting + ready("DEALER") + zmtpFrameHeader(payload.size(), false) + payload +
           rng.bytes(rng.size(64));
  }
  default: { // a ZMTP 1.0-style opening: length-prefixed identity
    std::string out;
    out += char(rng.range(0, 255));
    out += char(rng.range(0, 3));
    return out + rng.bytes(rng.size(300));
  }
  }
}

// One plain TCP connection: send `payload`, close our side, read whatever comes back for a
// moment, close. Returns false when the connection could not be made.
bool rawConnection(const Target& target, const std::string& payload) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return false;
  timeval timeout{0, 200000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr = target.address;
  addr.sin_port = htons(target.port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return false;
  }
  size_t sent = 0;
  while (sent < payload.size()) {
    const ssize_t n = ::send(fd, payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      break; // the worker hung up on us: fine
    sent += size_t(n);
  }
  ::shutdown(fd, SHUT_WR);
  // Drain briefly, so that our close does not turn into a reset before the worker read it all.
  char buffer[4096];
  const auto until = Clock::now() + 20ms;
  while (Clock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 5) <= 0)
      continue;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n <= 0)
      break;
  }
  ::close(fd);
  return true;
}

// --------------------------------------------------------------------------------------------
// The run

struct Tally {
  std::map<std::string, uint64_t> sent;
  std::map<std::string, uint64_t> replies;
  uint64_t send_failures = 0;
  uint64_t raw_refused = 0;
};

std::string randomRoutingId(Random& rng) {
  std::string id = rng.bytes(rng.range(1, 255));
  if (id[0] == '\0')
    id[0] = char(rng.range(1, 255)); // a leading zero byte is reserved by libzmq
  return id;
}

zmq::socket_t makeDealer(zmq::context_t& context, const std::string& endpoint,
                         const std::string& routing_id, int linger_ms) {
  zmq::socket_t s(context, zmq::socket_type::dealer);
  s.set(zmq::sockopt::linger, linger_ms);
  s.set(zmq::sockopt::maxmsgsize, kMaxMessageBytes);
  s.set(zmq::sockopt::sndhwm, 100000);
  if (!routing_id.empty())
    s.set(zmq::sockopt::routing_id, routing_id);
  s.connect(endpoint);
  return s;
}

std::string replyKind(const zmq::message_t& frame) {
  auto env = stampede::common::decodeEnvelope(frame.data(), frame.size());
  if (!env)
    return "undecodable";
  switch (env->body_case()) {
  case wire::Envelope::kHello:
    return "Hello";
  case wire::Envelope::kBusy:
    return "Busy";
  case wire::Envelope::kRefused:
    return "Refused";
  case wire::Envelope::kReady:
    return "Ready";
  case wire::Envelope::kHeartbeat:
    return "Heartbeat";
  default:
    return "other";
  }
}

// Reads what the worker sent to this DEALER. True when it heard Hello or Heartbeat: the worker
// is serving it (the others get Busy).
bool drain(zmq::socket_t& s, Tally& tally) {
  bool serving = false;
  for (;;) {
    std::vector<zmq::message_t> frames;
    auto got = zmq::recv_multipart(s, std::back_inserter(frames), zmq::recv_flags::dontwait);
    if (!got)
      return serving;
    const std::string kind = frames.size() == 1 ? replyKind(frames[0]) : "multi-part";
    ++tally.replies[kind];
    if (kind == "Hello" || kind == "Heartbeat")
      serving = true;
  }
}

// Sends one message (frames.size() parts). With `peer`, a one-part message is also decoded
// here, as the worker will decode it (bit flips and truncation included), to keep track of the
// sequence numbers and run ids the worker may have accepted from this DEALER.
bool sendFrames(zmq::socket_t& s, const std::vector<std::string>& frames, Tally& tally,
                PeerState* peer = nullptr) {
  if (peer && frames.size() == 1) {
    if (auto env = stampede::common::decodeEnvelope(frames[0].data(), frames[0].size()))
      peer->sent(*env);
  }
  try {
    for (size_t i = 0; i < frames.size(); ++i) {
      const auto flags =
          (i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none) |
          zmq::send_flags::dontwait;
      if (!s.send(zmq::buffer(frames[i]), flags)) {
        ++tally.send_failures;
        return false;
      }
    }
    return true;
  } catch (const zmq::error_t&) {
    ++tally.send_failures;
    return false;
  }
}

std::string envelopeBytes(const wire::Envelope& env) {
  return stampede::common::encodeEnvelope(env);
}

// The worker serves this DEALER since one of its Probes got through: end that session (a Stop
// for each run id it may have accepted, in order) so that the others, the walker above all, get
// their turn. False when its sequence numbers are spent: the caller replaces the DEALER, and
// the worker's heartbeat timeout ends the session.
bool release(zmq::socket_t& s, PeerState& peer, Tally& tally, uint64_t& sent) {
  if (peer.max_seq > std::numeric_limits<uint64_t>::max() - 64)
    return false; // no sequence numbers left
  std::vector<uint64_t> ids = {0};
  ids.insert(ids.end(), peer.welcome_ids.rbegin(), peer.welcome_ids.rend());
  for (uint64_t id : ids) {
    wire::Envelope stop;
    stop.set_protocol(kProtocolVersion);
    stop.set_run_id(id);
    stop.set_seq(++peer.max_seq);
    stop.mutable_stop();
    sendFrames(s, {envelopeBytes(stop)}, tally, &peer);
    ++tally.sent["release (Stop)"];
    ++sent;
  }
  peer.seq = peer.max_seq;
  return true;
}

// Drives the worker through Probe and Welcome so that what follows reaches the deeper states
// (Prepare parsing, run id checks), then ends the session with a garbage Prepare, a Stop or a
// FinalAck, or leaves it for the heartbeat timeout. Returns the messages of one walk.
std::vector<std::string> walk(Random& rng, PeerState& peer) {
  std::vector<std::string> out;
  if (peer.seq < peer.max_seq)
    peer.seq = peer.max_seq; // a random sequence number got ahead: continue above it
  wire::Envelope probe;
  probe.set_protocol(kProtocolVersion);
  probe.set_seq(++peer.seq);
  probe.mutable_probe()->set_master_ns(rng.edgyI64());
  out.push_back(envelopeBytes(probe));

  wire::Envelope welcome;
  welcome.set_protocol(kProtocolVersion);
  peer.run_id = rng.range(1, std::numeric_limits<uint64_t>::max());
  welcome.set_run_id(peer.run_id);
  welcome.set_seq(++peer.seq);
  randomBody(rng, 2, welcome);
  if (welcome.welcome().heartbeat_timeout_ms() < 1000)
    welcome.mutable_welcome()->set_heartbeat_timeout_ms(3000);
  out.push_back(envelopeBytes(welcome));

  for (size_t i = rng.range(0, 4); i > 0; --i) {
    wire::Envelope env = randomEnvelope(rng, peer);
    if (env.has_welcome() || env.has_probe())
      continue;
    if (rng.chance(0.5))
      env.set_run_id(peer.run_id);
    // Mostly in order, sometimes stale; never far ahead (that would end the walk's session).
    if (rng.chance(0.75))
      env.set_seq(++peer.seq);
    else
      env.set_seq(rng.chance(0.5) ? 0 : peer.seq);

    out.push_back(envelopeBytes(env));
  }

  wire::Envelope last;
  last.set_protocol(kProtocolVersion);
  last.set_run_id(peer.run_id);
  last.set_seq(++peer.seq);
  switch (rng.range(0, 3)) {
  case 0:
  case 1:
    randomBody(rng, 3, last); // Prepare: refused, the worker goes idle
    break;
  case 2:
    last.mutable_stop();
    break;
  default:
    last.mutable_final_ack();
    break;
  }
  out.push_back(envelopeBytes(last));
  return out;
}

void sendOversize(zmq::context_t& context, const Options& options, Random& rng, Tally& tally) {
  const size_t sizes[] = {size_t(kMaxMessageBytes) + 1, size_t(65) << 20, size_t(kMaxMessageBytes)};
  for (size_t size : sizes) {
    // Each from a DEALER of its own: the worker drops the connection of an oversize sender.
    auto dealer = makeDealer(context, options.endpoint, randomRoutingId(rng), 2000);
    std::string frame(size, '\0');
    // A cheap fill: random words here and there, the protobuf parser gives up early anyway.
    for (size_t at = 0; at + 8 <= size; at += 4096) {
      const uint64_t word = rng.u64();
      std::memcpy(frame.data() + at, &word, 8);
    }
    sendFrames(dealer, {frame}, tally);
    ++tally.sent[size > size_t(kMaxMessageBytes) ? "zmq oversize frame" : "zmq 64 MiB frame"];
    // Closing with linger: the frame is delivered (or refused) before the socket goes.
    dealer.close();
  }
}

// Probe as a master would until the worker says Hello (it answers Busy while it still serves a
// peer of the fuzz phase), then release it with a Stop. True when it answered Hello in time.
bool checkWorker(zmq::context_t& context, const Options& options, std::chrono::seconds budget) {
  const auto deadline = Clock::now() + budget;
  auto dealer = makeDealer(context, options.endpoint, "control-fuzz-check", 0);
  uint64_t busy = 0;
  while (Clock::now() < deadline) {
    wire::Envelope probe;
    probe.set_protocol(kProtocolVersion);
    probe.set_seq(1);
    probe.mutable_probe()->set_master_ns(0);
    const std::string bytes = envelopeBytes(probe);
    dealer.send(zmq::buffer(bytes), zmq::send_flags::dontwait);
    const auto until = std::min(deadline, Clock::now() + 300ms);
    while (Clock::now() < until) {
      zmq::pollitem_t items[] = {{dealer.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 1, 50ms);
      if (!(items[0].revents & ZMQ_POLLIN))
        continue;
      zmq::message_t frame;
      if (!dealer.recv(frame, zmq::recv_flags::dontwait))
        continue;
      auto env = stampede::common::decodeEnvelope(frame.data(), frame.size());
      if (env && env->has_busy()) {
        ++busy;
        std::this_thread::sleep_for(100ms);
        break;
      }
      if (env && env->has_hello()) {
        wire::Envelope stop;
        stop.set_protocol(kProtocolVersion);
        stop.set_seq(2);
        stop.mutable_stop();
        const std::string stop_bytes = envelopeBytes(stop);
        dealer.send(zmq::buffer(stop_bytes), zmq::send_flags::dontwait);
        // Give the Stop a moment to leave before the socket closes (linger 0).
        std::this_thread::sleep_for(100ms);
        fmt::print("control_fuzz: check: the worker answered Hello (after {} Busy) and was "
                   "released\n",
                   busy);
        return true;
      }
    }
  }
  fmt::print(stderr,
             "control_fuzz: check: the worker did not answer a Probe with Hello within "
             "{} s ({} Busy)\n",
             budget.count(), busy);
  return false;
}

int usage(const std::string& why) {
  fmt::print(stderr,
             "control_fuzz: {}\nusage: control_fuzz --endpoint tcp://127.0.0.1:PORT [--count N] "
             "[--seed S] [--max-seconds S] [--no-oversize] [--no-check]\n",
             why);
  return 2;
}

bool parseTarget(const std::string& endpoint, Target& target) {
  if (!endpoint.starts_with("tcp://"))
    return false;
  const auto rest = endpoint.substr(6);
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos)
    return false;
  const std::string host = rest.substr(0, colon);
  if (::inet_pton(AF_INET, host.c_str(), &target.address) != 1)
    return false;
  try {
    const int port = std::stoi(rest.substr(colon + 1));
    if (port < 1 || port > 65535)
      return false;
    target.port = uint16_t(port);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

} // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--endpoint")
        options.endpoint = value();
      else if (arg == "--count")
        options.count = std::stoull(value());
      else if (arg == "--seed")
        options.seed = std::stoull(value());
      else if (arg == "--max-seconds")
        options.max_seconds = std::stod(value());
      else if (arg == "--no-oversize")
        options.oversize = false;
      else if (arg == "--no-check")
        options.check = false;
      else if (arg == "--help" || arg == "-h") {
        fmt::print("usage: control_fuzz --endpoint tcp://127.0.0.1:PORT [--count N] [--seed S] "
                   "[--max-seconds S] [--no-oversize] [--no-check]\n"
                   "throws hostile input at a worker's control port (see the source's header)\n");
        return 0;
      } else
        return usage("unexpected argument '" + arg + "'");
    } catch (const std::exception& e) {
      return usage(arg + ": " + e.what());
    }
  }
  Target target;
  if (options.endpoint.empty())
    return usage("--endpoint is required");
  if (!parseTarget(options.endpoint, target))
    return usage("--endpoint: expected tcp://IPV4:PORT, got " + options.endpoint);
  if ((ntohl(target.address.s_addr) >> 24) != 127)
    return usage("--endpoint: only loopback (127.0.0.0/8) targets are allowed");
  if (options.max_seconds <= 0)
    return usage("--max-seconds: expected a positive number");

#ifdef CONTROL_FUZZ_SILENCE_PROTOBUF
  // Serializing a string field with invalid UTF-8 (on purpose) makes protobuf log each time.
  google::protobuf::SetLogHandler(nullptr);
#endif
  Random rng(options.seed);
  Tally tally;
  zmq::context_t context;
  const auto started = Clock::now();
  const auto deadline = started + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(options.max_seconds));

  PeerState main_peer;
  PeerState walker_peer;
  auto main_dealer = makeDealer(context, options.endpoint, "", 500);
  uint64_t walkers = 0;
  auto walker = makeDealer(context, options.endpoint, "control-fuzz-walker-0", 500);
  constexpr size_t kFresh = 4;
  std::vector<zmq::socket_t> fresh;
  std::vector<PeerState> fresh_peers(kFresh);
  for (size_t i = 0; i < kFresh; ++i)
    fresh.push_back(makeDealer(context, options.endpoint, randomRoutingId(rng), 0));
  uint64_t fresh_replaced = 0;
  uint64_t dealers_replaced = 0;

  const uint64_t oversize_at = options.count / 2;
  bool oversize_done = !options.oversize;
  uint64_t sent = 0;
  bool timed_out = false;
  while (sent < options.count) {
    if (Clock::now() >= deadline) {
      timed_out = true;
      break;
    }
    if (!oversize_done && sent >= oversize_at) {
      sendOversize(context, options, rng, tally);
      oversize_done = true;
      sent += 3;
      continue;
    }
    // Replace a fresh DEALER now and then: a new connection with a new routing id.
    if (rng.chance(0.003)) {
      const size_t i = rng.range(0, kFresh - 1);
      fresh[i].close();
      fresh[i] = makeDealer(context, options.endpoint, randomRoutingId(rng), 0);
      fresh_peers[i] = PeerState{};
      ++fresh_replaced;
    }
    const uint64_t which = rng.range(0, kFresh + 1);
    zmq::socket_t& dealer = which == 0 ? main_dealer : which == 1 ? walker : fresh[which - 2];
    PeerState& peer = which == 0 ? main_peer : which == 1 ? walker_peer : fresh_peers[which - 2];

    const uint64_t roll = rng.range(0, 99);
    if (which == 1 && roll < 60) {
      auto messages = walk(rng, walker_peer);
      for (const auto& m : messages)
        sendFrames(walker, {m}, tally, &walker_peer);
      tally.sent["walker envelope"] += messages.size();
      sent += messages.size();
    } else if (roll < 12) {
      sendFrames(dealer, {rng.bytes(rng.size(8192))}, tally, &peer);
      ++tally.sent["zmq random bytes"];
      ++sent;
    } else if (roll < 16) {
      sendFrames(dealer, {std::string()}, tally);
      ++tally.sent["zmq empty frame"];
      ++sent;
    } else if (roll < 24) {
      std::vector<std::string> parts(rng.range(2, 6));
      for (auto& p : parts)
        p = rng.chance(0.5) ? envelopeBytes(randomEnvelope(rng, peer)) : rng.bytes(rng.size(512));
      sendFrames(dealer, parts, tally);
      ++tally.sent["zmq multi-part"];
      ++sent;
    } else if (roll < 58) {
      sendFrames(dealer, {envelopeBytes(randomEnvelope(rng, peer))}, tally, &peer);
      ++tally.sent["envelope"];
      ++sent;
    } else if (roll < 72) {
      std::string bytes = envelopeBytes(randomEnvelope(rng, peer));
      bytes.resize(bytes.empty() ? 0 : rng.range(0, bytes.size() - 1));
      sendFrames(dealer, {bytes}, tally, &peer);
      ++tally.sent["truncated envelope"];
      ++sent;
    } else if (roll < 88) {
      sendFrames(dealer, {bitFlipped(rng, envelopeBytes(randomEnvelope(rng, peer)))}, tally, &peer);
      ++tally.sent["bit-flipped envelope"];
      ++sent;
    } else if (roll < 91) {
      PeerState scratch;
      const std::string payload = rawPayload(rng, envelopeBytes(randomEnvelope(rng, scratch)));
      if (!rawConnection(target, payload))
        ++tally.raw_refused;
      ++tally.sent["raw tcp connection"];
      ++sent;
    } else {
      // A valid envelope with the right protocol but a run id and sequence from nowhere.
      wire::Envelope env;
      env.set_protocol(kProtocolVersion);
      env.set_run_id(rng.range(1, std::numeric_limits<uint64_t>::max()));
      env.set_seq(rng.range(1, std::numeric_limits<uint64_t>::max()));
      randomBody(rng, int(rng.range(2, kBodyKinds - 1)), env);
      sendFrames(dealer, {envelopeBytes(env)}, tally, &peer);
      ++tally.sent["wrong-run envelope"];
      ++sent;
    }
    if (sent % 32 == 0) {
      // Whoever the worker serves lets go now and then, so that every DEALER (the walker above
      // all) gets its turn. One the worker cannot be made to let go of is replaced by a new
      // connection with a new routing id (the worker's heartbeat timeout ends the old session).
      auto turn = [&](zmq::socket_t& dealer, PeerState& peer, auto&& reconnect) {
        // A sequence number near the top (random, or from a bit flip) leaves a DEALER nothing
        // the worker would accept should it serve it: replace it before that can happen.
        const bool spent = peer.max_seq > std::numeric_limits<uint64_t>::max() - (1u << 20);
        if (!drain(dealer, tally) && !spent)
          return;
        if (!spent && release(dealer, peer, tally, sent))
          return;
        dealer.close();
        dealer = reconnect();
        peer = PeerState{};
        ++dealers_replaced;
      };
      turn(main_dealer, main_peer, [&] { return makeDealer(context, options.endpoint, "", 500); });
      turn(walker, walker_peer, [&] {
        return makeDealer(context, options.endpoint,
                          fmt::format("control-fuzz-walker-{}", ++walkers), 500);
      });
      for (size_t i = 0; i < kFresh; ++i)
        turn(fresh[i], fresh_peers[i],
             [&] { return makeDealer(context, options.endpoint, randomRoutingId(rng), 0); });
    }
  }
  drain(main_dealer, tally);
  drain(walker, tally);
  for (auto& f : fresh)
    drain(f, tally);
  // Let what is queued leave (bounded by each socket's linger), then close everything.
  main_dealer.close();
  walker.close();
  for (auto& f : fresh)
    f.close();

  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  fmt::print("control_fuzz: {} messages to {} in {:.1f} s (seed {}){}\n", sent, options.endpoint,
             seconds, options.seed, timed_out ? ", stopped by --max-seconds" : "");
  for (const auto& [kind, n] : tally.sent)
    fmt::print("  sent {:<24} {}\n", kind, n);
  fmt::print("  send failures            {}\n  raw connections refused  {}\n"
             "  dealers replaced         {} at random, {} that held the worker\n",
             tally.send_failures, tally.raw_refused, fresh_replaced, dealers_replaced);
  for (const auto& [kind, n] : tally.replies)
    fmt::print("  reply {:<23} {}\n", kind, n);
  std::fflush(stdout);

  if (!options.check)
    return 0;
  return checkWorker(context, options, 8s) ? 0 : 1;
}
