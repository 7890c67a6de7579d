// libFuzzer target: the stats decode (common::statsFromWire) on a wire::Stats as a peer could
// send it. The first byte picks the step table's size; the rest is the message. Checked:
// * all or nothing: a refused message leaves the book as it was;
// * a message applied twice (as two intervals with the same figures) never wraps a counter
//   silently: the second is either added exactly or refused;
// * what the book then holds goes back to the wire and is accepted as it is.
#include "common/protocol.h"

#include <cstddef>
#include <cstdint>

namespace common = stampede::common;
namespace wire = stampede::wire;

namespace {

bool sameStep(const common::StepStats& a, const common::StepStats& b) {
  return a.requests == b.requests && a.errors == b.errors && a.cancelled == b.cancelled &&
         a.dropped == b.dropped && a.bytes_in == b.bytes_in && a.bytes_out == b.bytes_out &&
         a.http2_responses == b.http2_responses && a.errors_by_kind == b.errors_by_kind &&
         a.latency_us.count() == b.latency_us.count() &&
         a.service_us.count() == b.service_us.count() &&
         a.schedule_lag_us.count() == b.schedule_lag_us.count() &&
         a.latency_us.sumUs() == b.latency_us.sumUs();
}

bool sameBook(const common::StatsBook& a, const common::StatsBook& b) {
  if (a.steps.size() != b.steps.size())
    return false;
  for (size_t i = 0; i < a.steps.size(); ++i)
    if (!sameStep(a.steps[i], b.steps[i]))
      return false;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  const size_t step_count = data[0] % 5; // 0..4: a 139 KB histogram per step and kind
  wire::Stats stats;
  if (!stats.ParseFromArray(data + 1, int(size - 1)))
    return 0;

  common::StatsBook book;
  if (!common::statsFromWire(stats, step_count, book)) {
    if (!book.steps.empty())
      __builtin_trap(); // refused, yet changed
    return 0;
  }
  const common::StatsBook once = book;
  if (!common::statsFromWire(stats, step_count, book)) {
    if (!sameBook(book, once))
      __builtin_trap(); // refused, yet changed
  } else {
    for (size_t i = 0; i < book.steps.size(); ++i)
      if (book.steps[i].requests != 2 * once.steps[i].requests ||
          book.steps[i].latency_us.count() != 2 * once.steps[i].latency_us.count())
        __builtin_trap(); // added, but not exactly
  }

  wire::Stats back;
  common::statsToWire(book, back);
  common::StatsBook copy;
  if (!common::statsFromWire(back, step_count, copy))
    __builtin_trap(); // our own encoding refused
  copy.steps.resize(book.steps.size());
  if (!sameBook(copy, book))
    __builtin_trap();
  return 0;
}
