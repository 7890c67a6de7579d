#include "master/progress.h"

#include "master/console.h"

#include <fmt/format.h>

#include <cstdio>
#include <unistd.h>

namespace stampede::master {
namespace {

// The last tick of a run may cover a few milliseconds: a rate over less than this is noise.
constexpr double kShortestRatedIntervalS = 0.25;

} // namespace

Progress::Progress(const CliOptions& cli, size_t steps, double total_s)
    : quiet_(cli.quiet), tty_(!cli.quiet && ::isatty(STDOUT_FILENO)), total_s_(total_s),
      cumulative_(steps), interval_(steps) {}

void Progress::tick(double elapsed_s, double interval_s, int users, int alive, int total,
                    std::string_view membership) {
  cumulative_.merge(interval_);
  auto interval_total = interval_.total();
  interval_.reset();
  last_interval_ = interval_total;
  last_interval_s_ = interval_s;
  auto running_total = cumulative_.total();
  if (quiet_ || interval_s < kShortestRatedIntervalS)
    return;
  LiveFigures f;
  f.elapsed_s = elapsed_s;
  f.total_s = total_s_;
  f.users = users;
  f.rps = interval_s > 0 ? double(interval_total.requests) / interval_s : 0;
  f.p50_ms = interval_total.latency_us.percentileUs(50) / 1000.0;
  f.p99_ms = interval_total.latency_us.percentileUs(99) / 1000.0;
  f.errors = running_total.errors;
  f.requests = running_total.requests;
  f.workers_alive = alive;
  f.workers_total = total;
  const std::string note =
      (membership.empty() ? std::string() : fmt::format("  [{}]", membership)) +
      divergence_.liveNote();
  if (tty_)
    fmt::print("\r\033[K{}{}", formatLiveLine(f, true), note);
  else
    fmt::print("{}{}\n", formatLiveLine(f, false), note);
  std::fflush(stdout);
}

void Progress::end() {
  if (tty_)
    fmt::print("\n");
}

} // namespace stampede::master
