// The capacity search as a pure state machine, driven by probe verdicts: grow the rate (x2)
// until a probe fails the SLO, then bisect between the best pass and the lowest fail until
// they are within the resolution, then confirm the best pass. An inconclusive probe (the load
// generators could not keep the schedule) ends the search: it says nothing about the target.
// No clock, no sockets; rates are arrivals per second, cluster-wide. Control thread only.
#pragma once

#include <optional>
#include <set>

namespace stampede::master {

enum class ProbeVerdict { Pass, Fail, Inconclusive };
enum class LimitedBy { Target, Generators, Max };
const char* probeVerdictName(ProbeVerdict v); // "pass" | "fail" | "inconclusive"
const char* limitedByName(LimitedBy l);       // "target" | "generators" | "max"

class CapacitySearch {
public:
  struct Options {
    double start = 10;
    double max = 100000;
    double resolution = 0.05; // done when (fail - pass) <= resolution x fail
    int confirm = 0;          // re-runs of the best pass before it counts
    double growth = 2.0;
  };
  explicit CapacitySearch(Options options);

  // The rate to probe next; nullopt once the search is over.
  std::optional<double> next() const { return next_; }
  // The verdict of the probe at next(). Returns the rate to probe after it, if any.
  std::optional<double> record(ProbeVerdict verdict);

  bool done() const { return !next_.has_value(); }
  // The best rate that passed (and every confirm of it); nullopt: none did.
  std::optional<double> maxPassing() const;
  // The lowest rate that failed; nullopt: none did.
  std::optional<double> firstFailing() const { return fail_; }
  // Once done(): what ended the search.
  std::optional<LimitedBy> limitedBy() const { return limited_by_; }
  // Once done(): 0 capacity found (target or max), 1 even the start fails, 3 generators.
  int exitCode() const;

private:
  void settleOrBisect(); // after a verdict, with a fail known or the max reached
  void finish(LimitedBy by);

  Options options_;
  std::set<double> passes_; // rates that passed, all below fail_
  std::optional<double> fail_;
  std::optional<double> next_;
  std::optional<LimitedBy> limited_by_;
  bool max_reached_ = false;
  std::optional<double> confirming_; // the best pass being re-run
  int confirms_left_ = 0;
};

} // namespace stampede::master
