// The control plane's codec (DESIGN.md "Processes and sockets"): one wire::Envelope per
// ZeroMQ frame, stats and error contexts to and from their wire form, and the bookkeeping that
// makes a stream of peer messages trustworthy (sequence filter, clock offset estimate).
// Free functions are pure and may be called from any thread; a SequenceFilter has one owner.
#pragma once

#include "common/clock.h"
#include "common/error_context.h"
#include "common/seq_ranges.h"
#include "common/stats.h"

#include "stampede.pb.h"

#include <google/protobuf/arena.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace stampede::common {

// Bumped on any change to proto/stampede.proto that an older peer would misread.
constexpr uint32_t kProtocolVersion = 4; // 3: SetRate, Prepare.find_capacity; 4: Reshare,
                                         // Subscribe(d), per-flow groups, queue runs, clocks
// Set as ZMQ_MAXMSGSIZE by the socket owners: a peer cannot make us buffer more than this.
// A Prepare carries the scenario's data files, hence the generous figure.
constexpr int64_t kMaxMessageBytes = 64 << 20;
// ErrorContext::body keeps the first KiB; a peer's longer body is cut on receipt as well.
constexpr size_t kMaxErrorBodyBytes = 1024;
// Each side of a session sends a Heartbeat this often: well inside the heartbeat timeout (3 s
// by default), after which the other side gives up on it.
constexpr std::chrono::seconds kHeartbeatInterval{1};
// A worker cuts its Stats deltas on these boundaries from the start barrier: each Stats is one
// row of the master's timeseries.
constexpr std::chrono::seconds kStatsInterval{1};

std::string encodeEnvelope(const wire::Envelope& envelope);
// nullopt for anything a well-behaved peer would not send: unparsable bytes, more than
// kMaxMessageBytes, or an envelope without a body. The protocol version is not checked here:
// the caller answers a mismatch by naming both versions.
std::optional<wire::Envelope> decodeEnvelope(const void* data, size_t size);
// The same, built on `arena`: for a reader of thousands of messages a second (the master), a
// reset arena with a first block of its own spares the heap allocation per field and per
// growth of a repeated field. The envelope lives until the caller resets the arena; nullptr
// where the other gives nullopt.
wire::Envelope* decodeEnvelope(const void* data, size_t size, google::protobuf::Arena& arena);

// Writes the steps of `book` that saw anything (a step whose every counter is zero carries no
// information and is left out, which keeps an idle step table off the wire). Replaces
// out.steps; interval, at_master_ns and active_users are the caller's.
void statsToWire(const StatsBook& book, wire::Stats& out);
// Adds the steps of `in` to `into`, growing it to step_count steps if it is smaller. All or
// nothing: returns false and leaves `into` untouched when any step is out of range or given
// twice, a histogram does not decode, or a counter would wrap.
bool statsFromWire(const wire::Stats& in, size_t step_count, StatsBook& into);

// clock_offset_ns is the worker's clock minus the master's (Welcome.clock_offset_ns): `at`,
// taken on the worker's steady clock, travels as a time on the master's.
// A histogram in the wire's run-length form, and back: addHistogramFromWire adds one that
// statsFromWire validated (or that we made) at a cost of its wire entries, not 17,408.
void histogramToWire(const Histogram& h, wire::Histogram& out);
void addHistogramFromWire(const wire::Histogram& in, Histogram& into);

// Messaging on queues: a set of sequence numbers as the wire's (gap, length) runs, and back.
// seqRunsFromWire gives the runs as [first, last] pairs, ascending; nullopt when the list is
// malformed (odd, a zero length, numbers past 2^64, or 0, which no producer uses).
void seqRunsToWire(const SeqRanges& set, wire::SeqRuns& out);
std::optional<std::vector<std::pair<uint64_t, uint64_t>>> seqRunsFromWire(const wire::SeqRuns& in);

// Protobuf string fields must hold valid UTF-8 or the peer cannot parse the message: bytes
// from the wire (response headers, URLs, file contents) pass through this first. Invalid
// sequences become U+FFFD.
std::string toValidUtf8(std::string_view text);

void errorToWire(const ErrorContext& error, int64_t clock_offset_ns, wire::ErrorContext& out);
// `at` comes back on the master's steady clock.
ErrorContext errorFromWire(const wire::ErrorContext& in);

// Nanoseconds since the steady clock's epoch: how time points travel on the wire.
int64_t steadyNs(SteadyTime t);
SteadyTime fromSteadyNs(int64_t ns);

// Drops messages that are not newer than the last one accepted from a peer (duplicates and
// stale ones, e.g. replayed after a reconnect) and counts them. Sequence numbers start at 1,
// so 0 is never accepted. One per peer and run; owned by the control thread.
class SequenceFilter {
public:
  bool accept(uint64_t seq) {
    if (seq <= last_) {
      ++dropped_;
      return false;
    }
    last_ = seq;
    return true;
  }
  uint64_t dropped() const { return dropped_; }
  // For a new run: forgets the last sequence number and the drop count.
  void reset() {
    last_ = 0;
    dropped_ = 0;
  }

private:
  uint64_t last_ = 0;
  uint64_t dropped_ = 0;
};

// One Probe/Hello exchange: master's steady clock at send and at receipt, the worker's steady
// clock when it answered.
struct ClockSample {
  int64_t master_send_ns = 0;
  int64_t worker_ns = 0;
  int64_t master_recv_ns = 0;
};

struct ClockEstimate {
  int64_t offset_ns = 0; // worker clock minus master clock
  int64_t rtt_ns = -1;   // of the sample used; the offset is right to within rtt_ns / 2
};

// NTP-style: the sample with the smallest round trip has the least room for asymmetric delay,
// so offset = worker_ns - midpoint(send, recv) of that one (the first on a tie). Samples whose
// receipt precedes their send are ignored; with no usable sample, {0, -1}.
ClockEstimate estimateOffset(std::span<const ClockSample> samples);

} // namespace stampede::common
