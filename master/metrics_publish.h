// The run's hooks for --metrics-listen: the server started before the workers are contacted,
// the figures published once a second from the run loop, and, after the report, the final
// figures kept up for the grace period (--metrics-grace) so that Prometheus scrapes them once
// more. Control thread only.
#pragma once

#include "master/metrics_server.h"
#include "master/progress.h"
#include "master/run_context.h"
#include "master/run_result.h"

#include <memory>
#include <optional>

namespace stampede::master {

// nullptr without --metrics-listen (or with --dry-run); an exit code when it cannot listen.
std::unique_ptr<MetricsServer> startMetrics(const CliOptions& cli, std::optional<int>& exit_code);

// Once a second during the run: the cumulative book and the last second's figures.
void publishRunMetrics(const RunContext& run, const Progress& progress, double elapsed_s,
                       uint32_t active_users);

// After the report: the final figures, then the grace period (a Ctrl-C ends it; a run that was
// interrupted skips it).
void publishFinalMetrics(const RunContext& run, const RunResult& result);

} // namespace stampede::master
