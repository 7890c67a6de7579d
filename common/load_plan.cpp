#include "common/load_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace stampede::common {

namespace {

double seconds(microseconds d) {
  return double(d.count()) / 1e6;
}

microseconds fromSeconds(double s) {
  return microseconds(static_cast<int64_t>(std::llround(s * 1e6)));
}

} // namespace

microseconds LoadSpec::total() const {
  microseconds sum{0};
  for (const Stage& s : stages)
    sum += s.over;
  return sum;
}

double LoadSpec::peak() const {
  double level = 0;
  for (const Stage& s : stages)
    if (!s.hold)
      level = std::max(level, s.to);
  return level;
}

uint64_t LoadGroup::vuCount() const {
  if (open())
    return load.max_in_flight ? load.max_in_flight : kDefaultMaxInFlight;
  return uint64_t(std::max(0, load.users));
}

microseconds Scenario::length() const {
  microseconds longest{0};
  for (const LoadGroup& g : groups)
    longest = std::max(longest, g.load.total());
  return groups.empty() ? load.total() : longest;
}

bool Scenario::anyOpen() const {
  if (groups.empty())
    return load.model == LoadSpec::Model::Open;
  return std::any_of(groups.begin(), groups.end(), [](const LoadGroup& g) { return g.open(); });
}

LoadCurve::LoadCurve(const std::vector<Stage>& stages, double scale) {
  double t = 0;
  double level = 0;
  double arrivals = 0;
  for (const Stage& stage : stages) {
    const double span = seconds(stage.over);
    const double to = stage.hold ? level : stage.to * scale;
    segments_.push_back(Segment{t, t + span, span > 0 ? level : to, to, arrivals});
    arrivals += span * (segments_.back().from + to) / 2;
    t += span;
    level = to;
    total_ += stage.over;
  }
}

double LoadCurve::levelAt(microseconds at) const {
  const double t = seconds(at);
  // A zero-length stage never contains t: the stage after it starts at its level.
  for (const Segment& s : segments_) {
    if (t < s.t0_s)
      break;
    if (t < s.t1_s)
      return s.from + (s.to - s.from) * (t - s.t0_s) / (s.t1_s - s.t0_s);
  }
  return 0;
}

double LoadCurve::arrivalsBy(microseconds at) const {
  const double t = seconds(at);
  double last = 0;
  for (const Segment& s : segments_) {
    if (t <= s.t0_s)
      return s.arrivals_t0;
    const double span = s.t1_s - s.t0_s;
    if (t < s.t1_s) {
      const double x = t - s.t0_s;
      return s.arrivals_t0 + s.from * x + (s.to - s.from) * x * x / (2 * span);
    }
    last = s.arrivals_t0 + span * (s.from + s.to) / 2;
  }
  return last;
}

std::optional<microseconds> LoadCurve::timeOfArrival(double n) const {
  for (const Segment& s : segments_) {
    const double span = s.t1_s - s.t0_s;
    const double in_segment = span * (s.from + s.to) / 2;
    if (span <= 0 || n >= s.arrivals_t0 + in_segment)
      continue;
    const double need = std::max(0.0, n - s.arrivals_t0);
    const double slope = (s.to - s.from) / span;
    double x;
    if (std::abs(slope) < 1e-12) {
      x = need / s.from;
    } else {
      // from*x + slope/2*x^2 = need, the root in [0, span].
      const double disc = s.from * s.from + 2 * slope * need;
      x = (-s.from + std::sqrt(std::max(0.0, disc))) / slope;
    }
    x = std::clamp(x, 0.0, span);
    return fromSeconds(s.t0_s + x);
  }
  return std::nullopt;
}

std::optional<microseconds> LoadCurve::nextTimeAbove(double level, microseconds from) const {
  const double t = seconds(from);
  for (const Segment& s : segments_) {
    if (s.t1_s <= t && !(s.t1_s == s.t0_s && s.t0_s == t))
      continue;
    const double start = std::max(t, s.t0_s);
    const double span = s.t1_s - s.t0_s;
    const double at_start = span > 0 ? s.from + (s.to - s.from) * (start - s.t0_s) / span : s.to;
    if (at_start > level)
      return fromSeconds(start);
    if (s.to > level && span > 0) {
      // Rising through `level` inside this segment.
      const double x = (level - s.from) / (s.to - s.from) * span;
      // Just past the crossing, so that levelAt() there is above `level`.
      return fromSeconds(s.t0_s + x) + microseconds(1);
    }
  }
  return std::nullopt;
}

std::vector<uint64_t> clusterUsersOf(uint32_t worker, std::span<const uint32_t> users) {
  uint64_t total = 0;
  for (uint32_t u : users)
    total += u;
  std::vector<uint64_t> mine;
  if (worker >= users.size())
    return mine;
  mine.reserve(users[worker]);
  std::vector<int64_t> current(users.size(), 0);
  for (uint64_t c = 0; c < total; ++c) {
    size_t best = 0;
    for (size_t w = 0; w < users.size(); ++w) {
      current[w] += users[w];
      if (current[w] > current[best])
        best = w;
    }
    current[best] -= int64_t(total);
    if (best == worker)
      mine.push_back(c);
  }
  return mine;
}

void applyDuration(LoadSpec& load, microseconds d) {
  if (!load.stages_written) {
    load.duration = d;
    if (!load.stages.empty() && load.stages.back().hold)
      load.stages.back().over = d;
    return;
  }
  std::vector<Stage> cut;
  microseconds at{0};
  double level = 0;
  for (const Stage& s : load.stages) {
    if (at >= d)
      break;
    Stage part = s;
    if (at + s.over > d) {
      part.over = d - at;
      if (!s.hold && s.over.count() > 0)
        part.to = level + (s.to - level) * double(part.over.count()) / double(s.over.count());
    }
    if (!s.hold)
      level = part.to;
    cut.push_back(part);
    at += part.over;
  }
  if (at < d)
    cut.push_back(Stage{true, 0, d - at}); // longer than the stages: hold the last level
  load.stages = std::move(cut);
}

void applyDuration(Scenario& scenario, microseconds d) {
  if (!scenario.load.stages.empty())
    applyDuration(scenario.load, d);
  for (Flow& flow : scenario.flows)
    if (flow.load)
      applyDuration(*flow.load, d);
  for (LoadGroup& group : scenario.groups)
    applyDuration(group.load, d);
}

size_t countSteps(const std::vector<Step>& steps, Step::Kind kind) {
  size_t n = 0;
  for (const Step& step : steps)
    n += step.kind == kind ? 1 : step.kind == Step::Kind::Loop ? countSteps(step.steps, kind) : 0;
  return n;
}

std::vector<LoadGroup> loadGroupsOf(const Scenario& scenario) {
  if (!scenario.groups.empty())
    return scenario.groups;
  LoadGroup all{scenario.load, {}, "load"};
  for (size_t f = 0; f < scenario.flows.size(); ++f)
    all.flows.push_back(f);
  return {all};
}

const Flow* lifeFlow(const Scenario& scenario, const LoadGroup& g, uint64_t vu) {
  if (g.open())
    return nullptr;
  if (g.flows.size() == 1)
    return &scenario.flows[g.flows[0]];
  for (size_t f : g.flows) {
    const Flow& flow = scenario.flows[f];
    if (flow.users > 0 && vu >= flow.first_user && vu < flow.first_user + flow.users)
      return &flow;
  }
  return nullptr;
}

bool needsStartBarrier(const Scenario& scenario) {
  if (!scenario.messaging || !scenario.messaging->start_barrier)
    return false;
  bool publishes = false;
  bool subscribes = false;
  for (size_t g = 0; g < scenario.groups.size(); ++g) {
    const LoadGroup& group = scenario.groups[g];
    for (size_t f : group.flows) {
      const Flow& flow = scenario.flows[f];
      publishes = publishes || countSteps(flow.steps, Step::Kind::Publish) > 0;
      const bool for_life = !group.open() && (group.flows.size() == 1 || flow.users > 0);
      subscribes = subscribes || (for_life && countSteps(flow.steps, Step::Kind::Subscribe) > 0);
    }
  }
  return publishes && subscribes;
}

std::string describeStages(const LoadSpec& load) {
  const bool open = load.model == LoadSpec::Model::Open;
  std::string out;
  for (const Stage& s : load.stages) {
    if (!out.empty())
      out += ", ";
    if (s.hold)
      out += fmt::format("hold {:.1f}s", seconds(s.over));
    else if (open)
      out += fmt::format("to {:g}/s over {:.1f}s", s.to, seconds(s.over));
    else
      out += fmt::format("to {:g} users over {:.1f}s", s.to, seconds(s.over));
  }
  return out;
}

} // namespace stampede::common
