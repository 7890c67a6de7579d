#include "worker/feeders.h"

#include <algorithm>

namespace stampede::worker {

Feeders::Feeders(const std::vector<common::Feeder>& data, std::span<const uint64_t> start,
                 uint64_t shuffle_seed)
    : data_(data) {
  for (const auto& feeder : data_) {
    auto cursor = std::make_unique<Cursor>();
    cursor->rows.store(feeder.rows.size(), std::memory_order_relaxed);
    if (cursors_.size() < start.size() && feeder.order != common::Feeder::Order::Random)
      cursor->next.store(start[cursors_.size()], std::memory_order_relaxed);
    if (feeder.order == common::Feeder::Order::Shuffle) {
      cursor->order.resize(feeder.rows.size());
      for (size_t i = 0; i < cursor->order.size(); ++i)
        cursor->order[i] = uint32_t(i);
      // One order per feeder: the seed and the feeder's index, through one mixing step.
      std::seed_seq seq{shuffle_seed, uint64_t(cursors_.size())};
      std::mt19937_64 rng(shuffle_seed != 0 ? std::mt19937_64(seq)
                                            : std::mt19937_64(std::random_device{}()));
      std::shuffle(cursor->order.begin(), cursor->order.end(), rng);
    }
    cursors_.push_back(std::move(cursor));
  }
}

void Feeders::keepRows(size_t f, uint64_t rows) {
  if (f >= cursors_.size() || data_[f].order != common::Feeder::Order::Sequence)
    return;
  auto& limit = cursors_[f]->rows;
  uint64_t now = limit.load(std::memory_order_relaxed);
  while (rows < now && !limit.compare_exchange_weak(now, rows, std::memory_order_relaxed)) {
  }
}

std::vector<uint64_t> Feeders::positions() const {
  std::vector<uint64_t> out;
  for (const auto& cursor : cursors_)
    out.push_back(cursor->next.load(std::memory_order_relaxed));
  return out;
}

std::optional<size_t> Feeders::drawRow(size_t f, std::mt19937_64& rng) {
  const auto& feeder = data_[f];
  const size_t rows = size_t(cursors_[f]->rows.load(std::memory_order_relaxed));
  if (rows == 0)
    return std::nullopt;
  if (feeder.order == common::Feeder::Order::Random) {
    std::uniform_int_distribution<size_t> pick(0, rows - 1);
    return pick(rng);
  }
  const uint64_t n = cursors_[f]->next.fetch_add(1, std::memory_order_relaxed);
  if (n >= rows && feeder.on_exhausted != common::Feeder::OnExhausted::Wrap)
    return std::nullopt;
  const size_t at = size_t(n % rows);
  return feeder.order == common::Feeder::Order::Shuffle ? cursors_[f]->order[at] : at;
}

} // namespace stampede::worker
