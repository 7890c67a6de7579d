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

// The feeders, and the loader's warnings.
void printDataAndWarnings(const common::Scenario& scenario) {
  for (const auto& feeder : scenario.data)
    fmt::print("  data {:<24} {} rows from {}, {}\n", "\"" + feeder.name + "\"", feeder.rows.size(),
               printable(feeder.file),
               feeder.split == common::Feeder::Split::Shared ? "shared" : "split per worker");
  for (const auto& warning : scenario.warnings)
    fmt::print("  WARNING: {}\n", printable(warning));
}

// Per-flow load (more than one load group): each group's schedule, then each worker's share of
// every group, a column or two per group.
void printGroupsPlan(const common::Scenario& scenario, Cluster& cluster,
                     const std::vector<WorkerPlan>& plans) {
  fmt::print("plan: \"{}\" against {}://{}:{}, per-flow load, {:.1f}s\n", printable(scenario.name),
             scenario.target.scheme, scenario.target.host, scenario.target.port,
             seconds(scenario.length()));
  for (const auto& override : scenario.overrides)
    fmt::print("  --set {}\n", printable(override));
  std::vector<std::string> titles;
  for (size_t g = 0; g < scenario.groups.size(); ++g) {
    const auto& group = scenario.groups[g];
    const auto& load = group.load;
    std::string names;
    for (size_t f : group.flows)
      names += (names.empty() ? "" : ", ") + ("\"" + printable(scenario.flows[f].name) + "\"");
    titles.push_back(fmt::format("g{}", g + 1));
    fmt::print("  g{} {}: flow{} {}: {} model, {:.1f}s: {}", g + 1, group.path,
               group.flows.size() == 1 ? "" : "s", names, group.open() ? "open" : "closed",
               seconds(load.total()), common::describeStages(load));
    if (group.open())
      fmt::print("; max_in_flight {}", group.vuCount());
    if (load.iterations > 0)
      fmt::print("; stops after {} iterations", load.iterations);
    fmt::print("; {{{{vu}}}} {}..{}\n", group.first_vu, group.first_vu + group.vuCount() - 1);
  }
  printDataAndWarnings(scenario);
  fmt::print("  {:<4} {:<28} {:>7} {:>6} {:>10}", "id", "worker", "threads", "weight", "offset ms");
  for (size_t g = 0; g < scenario.groups.size(); ++g) {
    if (scenario.groups[g].open())
      fmt::print(" {:>12} {:>12}", titles[g] + " rate/s", titles[g] + " in flight");
    else
      fmt::print(" {:>12}", titles[g] + " users");
    if (scenario.groups[g].load.iterations > 0)
      fmt::print(" {:>12}", titles[g] + " iter");
  }
  for (const auto& feeder : scenario.data)
    fmt::print(" {:>10}", feeder.name);
  fmt::print("\n");
  size_t i = 0;
  for (const auto& link : cluster.links()) {
    if (link.state != LinkState::Joined)
      continue;
    const WorkerPlan& plan = plans[i++];
    fmt::print("  {:<4} {:<28} {:>7} {:>6g} {:>10.3f}", link.index, printable(link.name),
               link.threads, link.address.weight, link.clock_offset_ns / 1e6);
    for (size_t g = 0; g < scenario.groups.size(); ++g) {
      const GroupPlan share = groupPlan(plan, g);
      const auto& load = scenario.groups[g].load;
      if (scenario.groups[g].open())
        fmt::print(" {:>12.1f} {:>12}", load.peak() * share.rate_share, share.max_in_flight);
      else
        fmt::print(" {:>12}", share.users);
      if (load.iterations > 0)
        fmt::print(" {:>12}", share.iterations);
    }
    for (size_t rows : plan.feeder_rows)
      fmt::print(" {:>10}", rows);
    fmt::print("\n");
  }
}

} // namespace

void printPlan(const common::Scenario& scenario, Cluster& cluster,
               const std::vector<WorkerPlan>& plans) {
  if (scenario.groups.size() > 1)
    return printGroupsPlan(scenario, cluster, plans);
  const auto& load = scenario.groups.empty() ? scenario.load : scenario.groups[0].load;
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
  printDataAndWarnings(scenario);
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
