// The data feeders' cursors of one worker, shared by all its load threads: which row of each
// feeder (data:) the next iteration takes. Sequence and shuffle draw each row once per pass
// (shuffle in an order drawn once per run); random draws any row, and never runs out.
// drawRow is called on any load thread, without a lock.
#pragma once

#include "common/scenario.h"

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <vector>

namespace stampede::worker {

class Feeders {
public:
  // `data` (the scenario's) must outlive this.
  explicit Feeders(const std::vector<common::Feeder>& data);

  // The row index to use for feeder `f`, or nullopt when it ran out (on_exhausted stop or
  // halt, every row drawn). `rng` is the calling load thread's.
  std::optional<size_t> drawRow(size_t f, std::mt19937_64& rng);

private:
  struct Cursor {
    std::atomic<uint64_t> next{0};
    std::vector<uint32_t> order; // shuffle: the rows in a random order, drawn once per run
  };
  const std::vector<common::Feeder>& data_;
  std::vector<std::unique_ptr<Cursor>> cursors_;
};

} // namespace stampede::worker
