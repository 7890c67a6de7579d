#include "common/queue_consumers.h"

namespace stampede::common {
namespace {

void walk(const std::vector<Step>& steps, std::map<std::string, size_t>& out) {
  for (const Step& step : steps) {
    if (step.kind == Step::Kind::Loop)
      walk(step.steps, out);
    else if (step.kind == Step::Kind::Subscribe && step.subscribe && !step.subscribe->from.topic)
      out.emplace(step.subscribe->from.text(), step.stats_index);
  }
}

} // namespace

std::map<std::string, size_t> queueConsumers(const Scenario& scenario) {
  std::map<std::string, size_t> out;
  for (const Flow& flow : scenario.flows)
    walk(flow.steps, out);
  return out;
}

} // namespace stampede::common
