#include "master/queue_accounting.h"

#include "common/protocol.h"
#include "common/queue_consumers.h"

#include <fmt/format.h>

#include <algorithm>

namespace stampede::master {

QueueAccounting::QueueAccounting(const common::Scenario& scenario)
    : queues_(common::queueConsumers(scenario)) {}

QueueAccounting::Added QueueAccounting::add(const wire::Stats& stats, common::SteadyTime cut) {
  Added added;
  for (const auto& part : stats.queue_confirmed()) {
    if (!queues_.count(part.queue()))
      continue;
    const auto runs = common::seqRunsFromWire(part);
    if (!runs) {
      added.malformed = true;
      continue;
    }
    Producer& p = producers_[{part.queue(), part.producer()}];
    for (const auto& [first, last] : *runs)
      p.confirmed.push_back({cut, first, last});
  }
  for (const auto& part : stats.queue_consumed()) {
    const auto queue = queues_.find(part.queue());
    const auto runs = common::seqRunsFromWire(part);
    if (queue == queues_.end() || !runs) {
      added.malformed = true;
      continue;
    }
    Producer& p = producers_[{part.queue(), part.producer()}];
    const auto note = [&](uint64_t seq, uint64_t n) {
      if (n == 0 || part.redelivered())
        return;
      added.duplicates += n;
      duplicates_[part.step()] += n;
      if (!added.first)
        added.first = Duplicate{part.step(), part.queue(), part.producer(), seq};
    };
    for (const auto& [first, last] : *runs) {
      const auto again = p.taken.firstIn(first, last);
      const uint64_t already = p.taken.add(first, last);
      if (again)
        note(*again, already);
    }
    for (uint64_t seq : part.again())
      note(seq, 1);
  }
  return added;
}

std::map<size_t, QueueAccounting::Figures>
QueueAccounting::judge(common::SteadyTime stopped) const {
  std::map<size_t, Figures> out;
  for (const auto& [step, n] : duplicates_)
    out[step].duplicates = n;
  const auto limit = stopped - kLossGrace;
  for (const auto& [key, p] : producers_) {
    Figures& f = out[queues_.at(key.first)];
    // A queue hands one producer's messages out in its order: what lies past the last number
    // taken, the consumers had not reached. It is still on the queue (a backlog), not lost.
    const uint64_t reached = p.taken.empty() ? 0 : p.taken.runs().rbegin()->second;
    for (const Confirmed& c : p.confirmed) {
      if (c.last > reached)
        f.queued += c.last - std::max(c.first, reached + 1) + 1;
      if (c.first > reached)
        continue;
      const uint64_t last = std::min(c.last, reached);
      const uint64_t missing = (last - c.first + 1) - p.taken.countIn(c.first, last);
      if (missing == 0)
        continue;
      if (c.cut > limit) {
        f.in_flight += missing;
        continue;
      }
      if (f.example.empty()) {
        const auto [from, to] = *p.taken.firstGap(c.first, last);
        f.example =
            from == to ? fmt::format("message {} of producer {} on {}", from, key.second, key.first)
                       : fmt::format("messages {}..{} of producer {} on {}", from, to, key.second,
                                     key.first);
      }
      f.lost += missing;
    }
  }
  return out;
}

void addQueueFigures(const std::map<size_t, QueueAccounting::Figures>& figures,
                     common::StatsBook& book) {
  for (const auto& [step, f] : figures) {
    if (step >= book.steps.size())
      continue;
    auto& s = book.steps[step];
    s.counters["lost"] += f.lost;
    s.counters["duplicate"] += f.duplicates;
    s.counters["in_flight_at_end"] += f.in_flight;
    s.counters["queued_at_end"] += f.queued;
    if (f.lost) {
      s.errors += f.lost;
      s.errors_by_kind["message_lost"] += f.lost;
    }
    if (f.duplicates) {
      s.errors += f.duplicates;
      s.errors_by_kind["message_duplicate"] += f.duplicates;
    }
  }
}

} // namespace stampede::master
