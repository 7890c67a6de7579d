// on_worker_lost: rejoin (forward mode, --workers): the master keeps probing the workers it has
// lost, once a second. One that answers again (restarted on the same address, or healed) is
// handshaken afresh (a new clock offset), gets the lost worker's share back (its users or rate,
// max_in_flight, first virtual user and feeder rows) in Welcome and Prepare, and a Start on the
// run's clock: it runs what is left of the run, so the cluster's load returns to what the
// scenario asks. Its figures add to what the lost one had reported. Every leave and join is
// kept on the link with its time (WorkerLink::events).
// Reverse mode (--listen): a lost worker cannot be probed (a restarted one dials in with a new
// identity), so its place stays vacant; a new worker that dials in while the run goes on takes
// the first vacant place (its index and share) and joins the same way. With no vacant place, a
// worker dialling in is admitted while the run has fewer places than --max-workers (whatever
// on_worker_lost says): every share is re-planned (master/replan.h), the newcomer's shipped in its
// Prepare and the others' in a Reshare, all in force from its join time, so that the cluster's
// total stays the scenario's (places of lost workers keep their shares: under halt or continue the
// cluster stays short of them); beyond that, or when the shares cannot be re-planned, it is refused
// with one line on stderr. A worker taking a place continues that place's feeders where it had
// reached (Prepare.feeder_start). Control thread only.
#pragma once

#include "common/clock.h"
#include "common/protocol.h"
#include "master/replan.h"
#include "master/run_context.h"
#include "stampede.pb.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace stampede::master {

class Rejoiner {
public:
  explicit Rejoiner(RunContext& run);

  // A running worker was just declared lost: noted, and probed from now on when the scenario
  // says rejoin and the master dialled it.
  void onLost(WorkerLink& link, common::SteadyTime now);
  // A running worker was stopped by its operator and sent its last figures: noted (events, the
  // live line). Its place is not taken again.
  void onLeft(WorkerLink& link, common::SteadyTime now);
  // Once per loop turn: probes each lost worker once a second, and gives up on a rejoin that
  // got no Ready within --connect-timeout.
  void probe(common::SteadyTime now);
  // A message from any worker: true when it belonged to a rejoin (Hello, Ready, Refused from a
  // worker being rejoined) and the run loop has nothing more to do with it.
  // `admitting`: the run neither halted nor stopping, so a worker dialling in may join.
  bool onMessage(WorkerLink& link, const wire::Envelope& e, common::SteadyTime now, bool admitting);
  // A lost worker may still come back (or, reverse mode, be replaced) before the run's end.
  bool waiting(common::SteadyTime now) const;
  // The leaves and joins since the last call, for the live line: "lost H:P; joined H:P".
  std::string takeNews();

private:
  struct Attempt {
    std::vector<common::ClockSample> samples;
    common::SteadyTime next_probe{};
    common::SteadyTime ready_deadline{}; // Joined: when a missing Ready sends it back to lost
    std::string join_reason;             // for workers[].events
    bool extra = false;                  // beyond --expect-workers: a new place, re-planned
    std::optional<Replan> replan;        // extra: computed at its Welcome, applied at its join
  };
  void noteNews(std::string text);
  void sendProbe(WorkerLink& link, common::SteadyTime now);
  // False when a newcomer's re-plan cannot be done (it is then refused).
  bool welcome(WorkerLink& link, Attempt& attempt, common::SteadyTime now);
  void startRejoined(WorkerLink& link, Attempt& attempt, common::SteadyTime now);
  void startProbing(WorkerLink& link, std::string reason, bool extra, common::SteadyTime now);
  void admitOrRefuse(WorkerLink& link, common::SteadyTime now);
  // Every place's capacity (weight times threads), then `newcomer`'s.
  std::vector<double> capacities(const WorkerLink& newcomer) const;
  void applyReplan(Replan replan, common::SteadyTime join_at);
  bool tooLate(common::SteadyTime now) const;

  void admit(WorkerLink& link, common::SteadyTime now);

  RunContext& run_;
  bool enabled_;
  bool reverse_;
  std::map<WorkerLink*, Attempt> attempts_;
  std::vector<WorkerLink*> vacant_; // reverse mode: lost workers whose places are free
  std::string news_;                // takeNews()
  bool extra_pending_ = false;      // a worker beyond --expect-workers is being brought in
  uint64_t next_first_vu_ = 0;      // open model: above every {{vu}} block given out
};

} // namespace stampede::master
