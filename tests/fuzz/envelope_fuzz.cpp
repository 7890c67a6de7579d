// libFuzzer target: the control plane's decode (common::decodeEnvelope, both forms) on a frame
// as a peer could send it, then what a reader does with each body it may receive: stats into a
// book, error contexts back from the wire. Both decode forms must agree on every frame.
#include "common/protocol.h"

#include <google/protobuf/arena.h>

#include <cstddef>
#include <cstdint>

namespace common = stampede::common;
namespace wire = stampede::wire;

namespace {

// Step tables as the master sizes them: a few steps, as scenarios have.
constexpr size_t kStepCount = 4;

void useStats(const wire::Stats& stats) {
  common::StatsBook book;
  common::statsFromWire(stats, kStepCount, book);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto envelope = common::decodeEnvelope(data, size);
  google::protobuf::Arena arena;
  const wire::Envelope* on_arena = common::decodeEnvelope(data, size, arena);
  if (envelope.has_value() != (on_arena != nullptr))
    __builtin_trap();
  if (!envelope)
    return 0;
  if (envelope->body_case() != on_arena->body_case() || envelope->seq() != on_arena->seq())
    __builtin_trap();
  switch (envelope->body_case()) {
  case wire::Envelope::kStats:
    useStats(envelope->stats());
    break;
  case wire::Envelope::kFinal:
    useStats(envelope->final().stats());
    break;
  case wire::Envelope::kError: {
    const common::ErrorContext error = common::errorFromWire(envelope->error().context());
    if (error.body.size() > common::kMaxErrorBodyBytes)
      __builtin_trap(); // cut on receipt (protocol.h)
    break;
  }
  default:
    break;
  }
  // What we decoded we can encode, and it decodes again.
  const std::string again = common::encodeEnvelope(*envelope);
  if (!again.empty() && !common::decodeEnvelope(again.data(), again.size()))
    __builtin_trap();
  return 0;
}
