// The run itself, from Start until no worker is running: merges the workers' Stats, lets the
// halt policy judge every error, count, threshold, lost worker and interrupt, sends Stop at the
// end and Halt when the policy says so, and once per kTickInterval heartbeats the workers,
// prints the live line and writes timeseries rows. Control thread only.
#pragma once

#include "master/halt_policy.h"
#include "master/interval_rows.h"
#include "master/progress.h"
#include "master/queue_accounting.h"
#include "master/rejoin.h"
#include "master/report.h"
#include "master/run_context.h"
#include "master/run_result.h"
#include "master/thresholds.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

// What a worker lost mid-run did after its last Stats, which never reached us.
struct LostWorker {
  double lost_at_s = 0;
  std::optional<double> last_stats_at_s;
  // Its last interval's rate times the time from that Stats to when it stopped. It stopped
  // after it was last heard from and before its next Stats was due (each comes every
  // second): the estimate takes the middle, low and high the ends.
  std::optional<uint64_t> estimate, low, high;
};

class RunLoop {
public:
  // `result` receives the warnings and the dropped-message count as they happen.
  RunLoop(RunContext& run, RunResult& result);

  // Opens timeseries.csv (removing the previous run's report), then runs until no worker is
  // running.
  void run();
  // The end: the last partial interval into the thresholds and the live line, and the last
  // timeseries rows. Returns when the run ended.
  common::SteadyTime end();

  const HaltPolicy& policy() const { return policy_; }
  const ThresholdJudge& judge() const { return judge_; }
  const common::StatsBook& book() { return progress_.book(); }
  const Progress& progress() const { return progress_; }
  // When the master first sent Halt, if it did.
  std::optional<common::SteadyTime> haltSentAt() const { return halt_sent_at_; }
  const std::map<const WorkerLink*, LostWorker>& lostWorkers() const { return lost_workers_; }
  bool outputsFailed() const { return outputs_failed_; }
  // Messaging on queues, judged by end(): per SUBSCRIBE step, and the first loss as an error
  // (the run failed; nothing is left to halt).
  const std::map<size_t, QueueAccounting::Figures>& queueFigures() const { return queue_figures_; }
  const std::optional<common::ErrorContext>& queueLoss() const { return queue_loss_; }

private:
  void openOutputs();
  void onMessage(WorkerLink& link, const wire::Envelope& e);
  void onStats(WorkerLink& link, const wire::Envelope& e);
  void checkErrorCount();
  void checkSilent(common::SteadyTime now);
  void tick(common::SteadyTime now);
  bool running() const;
  void sendHalt(Decision decision, common::SteadyTime now);
  void warn(std::string text);
  void writeRows(std::vector<IntervalRow> finished);
  void onQueueDuplicate(const WorkerLink& link, const QueueAccounting::Duplicate& d, uint64_t n,
                        common::SteadyTime at);
  void judgeQueues(common::SteadyTime end);

  RunContext& run_;
  RunResult& result_;
  Progress progress_;
  IntervalRows rows_;
  Timeseries timeseries_;
  bool outputs_failed_ = false;
  std::map<const WorkerLink*, LostWorker> lost_workers_;
  Rejoiner rejoin_;
  bool stop_sent_ = false;
  HaltPolicy policy_;
  std::optional<common::SteadyTime> halt_sent_at_;
  ThresholdJudge judge_;
  common::SteadyTime last_tick_;
  common::SteadyTime next_tick_;
  QueueAccounting queue_accounting_;
  std::map<size_t, QueueAccounting::Figures> queue_figures_;
  std::optional<common::ErrorContext> queue_loss_;
};

} // namespace stampede::master
