#include "master/plan_print.h"

#include "common/load_plan.h"
#include "master/console.h"

#include <fmt/format.h>

#include <chrono>

namespace stampede::master {
namespace {

double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

} // namespace

void printPlan(const common::Scenario& scenario, Cluster& cluster,
               const std::vector<WorkerPlan>& plans) {
  const auto& load = scenario.load;
  const bool open = load.model == common::LoadSpec::Model::Open;
  if (const auto& c = scenario.capacity) {
    const auto ms = [](std::chrono::microseconds d) { return double(d.count()) / 1000.0; };
    fmt::print("plan: \"{}\" against {}://{}:{}, capacity search (open model), at most {:.0f}s: "
               "from {:g}/s, x2 until a probe fails, then bisect to {:g}%, never above {:g}/s; "
               "probes of {:g}s judged after {:g}s of warmup, the best pass confirmed {} time{}\n",
               printable(scenario.name), scenario.target.scheme, scenario.target.host,
               scenario.target.port, seconds(load.total()), c->start, c->resolution * 100, c->max,
               ms(c->probe) / 1000, ms(c->warmup) / 1000, c->confirm, c->confirm == 1 ? "" : "s");
    fmt::print("  slo: p99 <= {:g} ms, error rate <= {:g}%; inconclusive (the generators) above a "
               "schedule lag p99 of {:g} ms; max_in_flight {}; the rates below are the first "
               "probe's\n",
               ms(c->slo_p99), c->slo_error_rate * 100, ms(c->max_lag), c->max_in_flight);
  } else {
    fmt::print("plan: \"{}\" against {}://{}:{}, {} model, {:.1f}s: {}\n", printable(scenario.name),
               scenario.target.scheme, scenario.target.host, scenario.target.port,
               open ? "open" : "closed", seconds(load.total()), common::describeStages(load));
  }
  if (open && !scenario.capacity)
    fmt::print("  rate up to {:g}/s, max_in_flight {}\n", load.peak(),
               load.max_in_flight ? load.max_in_flight : common::kDefaultMaxInFlight);
  if (load.iterations > 0)
    fmt::print("  stops after {} iterations\n", load.iterations);
  for (const auto& override : scenario.overrides)
    fmt::print("  --set {}\n", printable(override));
  double total_weight = 0;
  for (const auto& flow : scenario.flows)
    total_weight += flow.weight;
  for (const auto& flow : scenario.flows)
    if (flow.users > 0) // pinned: its own users, not picked by weight
      fmt::print("  flow {:<24} users {}\n", "\"" + printable(flow.name) + "\"", flow.users);
    else
      fmt::print("  flow {:<24} weight {:g} ({:.0f}%)\n", "\"" + printable(flow.name) + "\"",
                 flow.weight, 100 * flow.weight / total_weight);
  for (const auto& feeder : scenario.data)
    fmt::print("  data {:<24} {} rows from {}, {}\n", "\"" + feeder.name + "\"", feeder.rows.size(),
               printable(feeder.file),
               feeder.split == common::Feeder::Split::Shared ? "shared" : "split per worker");
  for (const auto& warning : scenario.warnings)
    fmt::print("  WARNING: {}\n", printable(warning));
  fmt::print("  {:<4} {:<28} {:>7} {:>6} {:>9} {:>10} {:>10}", "id", "worker", "threads", "weight",
             open ? "rate/s" : "users", open ? "in flight" : "", "offset ms");
  if (load.iterations > 0)
    fmt::print(" {:>10}", "iterations");
  for (const auto& feeder : scenario.data)
    fmt::print(" {:>10}", feeder.name);
  fmt::print("\n");
  size_t i = 0;
  for (const auto& link : cluster.links()) {
    if (link.state != LinkState::Joined)
      continue;
    const WorkerPlan& plan = plans[i++];
    fmt::print("  {:<4} {:<28} {:>7} {:>6g} ", link.index, printable(link.name), link.threads,
               link.address.weight);
    if (open)
      fmt::print("{:>9.1f} {:>10}", load.peak() * plan.rate_share, plan.max_in_flight);
    else
      fmt::print("{:>9} {:>10}", plan.users, ""); // users interleave: no block to show
    fmt::print(" {:>10.3f}", link.clock_offset_ns / 1e6);
    if (load.iterations > 0)
      fmt::print(" {:>10}", plan.iterations);
    for (size_t rows : plan.feeder_rows)
      fmt::print(" {:>10}", rows);
    fmt::print("\n");
  }
}

} // namespace stampede::master
