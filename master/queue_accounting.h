// Loss and duplicates on queues (issue 17). Competing consumers, on any workers, each take part
// of a producer's sequence; every worker reports what its producers had confirmed and its
// consumers took (wire::Stats queue_confirmed / queue_consumed, worker/queue_ledger.h), and this
// unites the parts per queue and producer. A number taken twice (not flagged redelivered) is a
// duplicate at once. At the end, a confirmed number nobody took is lost when the consumers had
// taken a later number of its producer (the queue had moved past it), but for those confirmed
// in the last kLossGrace before the consumers stopped: those were in flight, and a halt or the
// end cancels them; they are counted as in flight, never as lost. Numbers past the last one
// taken were still on the queue (a backlog the consumers had not reached): counted as queued,
// never as lost. Control thread.
#pragma once

#include "common/clock.h"
#include "common/scenario.h"
#include "common/seq_ranges.h"
#include "common/stats.h"
#include "stampede.pb.h"

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stampede::master {

class QueueAccounting {
public:
  // Loopback and a healthy broker deliver in milliseconds; a message confirmed this long before
  // the consumers stopped had every chance to be taken.
  static constexpr std::chrono::seconds kLossGrace{2};

  explicit QueueAccounting(const common::Scenario& scenario);

  struct Duplicate {
    size_t step = 0; // the SUBSCRIBE step that took it again
    std::string queue, producer;
    uint64_t seq = 0;
  };
  struct Added {
    uint64_t duplicates = 0;
    std::optional<Duplicate> first; // the first of them, for the error report
    bool malformed = false;         // a run list did not decode: that part was dropped
  };
  // One worker's Stats (or Final's), cut at `cut` on our clock.
  Added add(const wire::Stats& stats, common::SteadyTime cut);

  // Per SUBSCRIBE step (the queue's first one): what the end found.
  struct Figures {
    uint64_t lost = 0;
    uint64_t duplicates = 0;
    uint64_t in_flight = 0; // confirmed within kLossGrace of the stop and not taken
    uint64_t queued = 0;    // confirmed past the last number of its producer taken
    std::string example;    // the first loss: "messages 5..7 of producer 0.1 on queue://q"
  };
  // Judges every confirmed number against what was taken, the consumers having stopped at
  // `stopped`.
  std::map<size_t, Figures> judge(common::SteadyTime stopped) const;
  bool any() const { return !queues_.empty(); }

private:
  struct Confirmed {
    common::SteadyTime cut;
    uint64_t first, last;
  };
  struct Producer {
    common::SeqRanges taken;
    std::vector<Confirmed> confirmed;
  };
  std::map<std::string, size_t> queues_; // queue -> its first SUBSCRIBE step
  std::map<std::pair<std::string, std::string>, Producer> producers_; // (queue, producer)
  std::map<size_t, uint64_t> duplicates_;                             // per step
};

// The counts a judged queue adds to its SUBSCRIBE step: errors_by_kind message_lost and
// message_duplicate (also in `errors`), counters lost, duplicate, in_flight_at_end and
// queued_at_end.
void addQueueFigures(const std::map<size_t, QueueAccounting::Figures>& figures,
                     common::StatsBook& book);

} // namespace stampede::master
