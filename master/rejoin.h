// on_worker_lost: rejoin (forward mode, --workers): the master keeps probing the workers it has
// lost, once a second. One that answers again (restarted on the same address, or healed) is
// handshaken afresh (a new clock offset), gets the lost worker's share back (its users or rate,
// max_in_flight, first virtual user and feeder rows) in Welcome and Prepare, and a Start on the
// run's clock: it runs what is left of the run, so the cluster's load returns to what the
// scenario asks. Its figures add to what the lost one had reported. Every leave and join is
// kept on the link with its time (WorkerLink::events).
// Reverse mode (--listen): a lost worker cannot be probed (a restarted one dials in with a new
// identity), so its place stays vacant; a new worker that dials in while the run goes on takes
// the first vacant place (its index and share) and joins the same way. The cluster never holds
// more than the workers it started with (at most --expect-workers). Control thread only.
#pragma once

#include "common/clock.h"
#include "common/protocol.h"
#include "master/run_context.h"
#include "stampede.pb.h"

#include <map>
#include <vector>

namespace stampede::master {

class Rejoiner {
public:
  explicit Rejoiner(RunContext& run);

  // A running worker was just declared lost: noted, and probed from now on when the scenario
  // says rejoin and the master dialled it.
  void onLost(WorkerLink& link, common::SteadyTime now);
  // Once per loop turn: probes each lost worker once a second, and gives up on a rejoin that
  // got no Ready within --connect-timeout.
  void probe(common::SteadyTime now);
  // A message from any worker: true when it belonged to a rejoin (Hello, Ready, Refused from a
  // worker being rejoined) and the run loop has nothing more to do with it.
  bool onMessage(WorkerLink& link, const wire::Envelope& e, common::SteadyTime now);
  // A lost worker may still come back (or, reverse mode, be replaced) before the run's end.
  bool waiting(common::SteadyTime now) const;

private:
  struct Attempt {
    std::vector<common::ClockSample> samples;
    common::SteadyTime next_probe{};
    common::SteadyTime ready_deadline{}; // Joined: when a missing Ready sends it back to lost
  };
  void sendProbe(WorkerLink& link, common::SteadyTime now);
  void welcome(WorkerLink& link, Attempt& attempt, common::SteadyTime now);
  void startRejoined(WorkerLink& link, common::SteadyTime now);
  bool tooLate(common::SteadyTime now) const;

  void admit(WorkerLink& link, common::SteadyTime now);

  RunContext& run_;
  bool enabled_;
  bool reverse_;
  std::map<WorkerLink*, Attempt> attempts_;
  std::vector<WorkerLink*> vacant_; // reverse mode: lost workers whose places are free
};

} // namespace stampede::master
