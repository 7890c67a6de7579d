// Messaging on queues (issue 17): the sequence numbers this worker's producers had confirmed
// and its consumers took since the last Stats, per step, queue and producer. Competing
// consumers, maybe on other workers, each take part of a producer's sequence, so no consumer
// can judge loss alone: the master unites every worker's parts (master/queue_accounting.h).
// Load threads record; the control thread takes the delta once a second.
#pragma once

#include "common/seq_ranges.h"
#include "stampede.pb.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

namespace stampede::worker {

class QueueLedger {
public:
  // A load thread: a publish to `queue` the broker confirmed (or that went out, without
  // confirm), stamped stampede_seq `seq` by `producer` (its stampede_src).
  void confirmed(uint32_t step, const std::string& queue, std::string_view producer, uint64_t seq);
  // A load thread: a message a consumer took from `queue`; `redelivered`: with the broker's
  // flag, which makes a second copy no duplicate.
  void consumed(uint32_t step, const std::string& queue, std::string_view producer, uint64_t seq,
                bool redelivered);
  // The control thread: moves the delta into `out` (queue_confirmed, queue_consumed).
  void takeInto(wire::Stats& out);

private:
  using Key = std::tuple<uint32_t, std::string, std::string>; // step, queue, producer
  struct Part {
    common::SeqRanges seqs;
    std::vector<uint64_t> again; // consumed twice within this delta
  };
  std::mutex mutex_;
  std::map<Key, Part> confirmed_;
  std::map<Key, Part> consumed_;
  std::map<Key, Part> redelivered_;
};

} // namespace stampede::worker
