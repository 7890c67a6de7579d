#include "worker/queue_ledger.h"

#include "common/protocol.h"

namespace stampede::worker {

void QueueLedger::confirmed(uint32_t step, const std::string& queue, std::string_view producer,
                            uint64_t seq) {
  std::lock_guard lock(mutex_);
  confirmed_[Key{step, queue, std::string(producer)}].seqs.add(seq);
}

void QueueLedger::consumed(uint32_t step, const std::string& queue, std::string_view producer,
                           uint64_t seq, bool redelivered) {
  std::lock_guard lock(mutex_);
  Part& part = (redelivered ? redelivered_ : consumed_)[Key{step, queue, std::string(producer)}];
  if (part.seqs.add(seq) != 0 && !redelivered)
    part.again.push_back(seq);
}

void QueueLedger::takeInto(wire::Stats& out) {
  std::map<Key, Part> confirmed, consumed, redelivered;
  {
    std::lock_guard lock(mutex_);
    confirmed.swap(confirmed_);
    consumed.swap(consumed_);
    redelivered.swap(redelivered_);
  }
  const auto write = [](const std::map<Key, Part>& parts, auto add, bool flag = false) {
    for (const auto& [key, part] : parts) {
      wire::SeqRuns& runs = *add();
      runs.set_redelivered(flag);
      runs.set_step(std::get<0>(key));
      runs.set_queue(common::toValidUtf8(std::get<1>(key)));
      runs.set_producer(common::toValidUtf8(std::get<2>(key)));
      common::seqRunsToWire(part.seqs, runs);
      runs.mutable_again()->Assign(part.again.begin(), part.again.end());
    }
  };
  write(confirmed, [&] { return out.add_queue_confirmed(); });
  write(consumed, [&] { return out.add_queue_consumed(); });
  write(
      redelivered, [&] { return out.add_queue_consumed(); }, true);
}

} // namespace stampede::worker
