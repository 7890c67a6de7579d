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
#include <span>
#include <vector>

namespace stampede::worker {

class Feeders {
public:
  // `data` (the scenario's) must outlive this. `start`, by feeder: where each cursor starts (a
  // worker taking a place in a run in progress continues where the place had reached);
  // missing entries start at 0. `shuffle_seed` (EngineOptions::shuffle_seed) orders shuffle
  // feeders; 0: a random order.
  explicit Feeders(const std::vector<common::Feeder>& data, std::span<const uint64_t> start = {},
                   uint64_t shuffle_seed = 0);

  // The row index to use for feeder `f`, or nullopt when it ran out (on_exhausted stop or
  // halt, every row drawn). `rng` is the calling load thread's.
  std::optional<size_t> drawRow(size_t f, std::mt19937_64& rng);

  // Sequence feeder `f` keeps only its first `rows` rows from now on (the rest were handed to a
  // worker that joined the run: Engine::reshare); never more than it has. Any thread.
  void keepRows(size_t f, uint64_t rows);
  // By feeder, the cursor's position: draws so far, from its start on (random feeders: 0).
  // Any thread; a draw racing with it may or may not be counted.
  std::vector<uint64_t> positions() const;

private:
  struct Cursor {
    std::atomic<uint64_t> next{0};
    std::atomic<uint64_t> rows{0}; // the rows it may draw: all, or fewer after keepRows
    std::vector<uint32_t> order;   // shuffle: the rows in a random order, drawn once per run
  };
  const std::vector<common::Feeder>& data_;
  std::vector<std::unique_ptr<Cursor>> cursors_;
};

} // namespace stampede::worker
