// The master's side of the control plane: the set of workers, their sockets, the handshake
// (versions, clock offsets), and sending and receiving Envelopes. One DEALER per worker that
// the master dials, or one ROUTER that dialling workers connect to (reverse mode); either
// way a broadcast (Halt) is one small message per worker, sent before anything else queued.
// Control thread only.
#pragma once

#include "common/clock.h"
#include "common/handshake_monitor.h"
#include "common/protocol.h"
#include "common/stats.h"
#include "master/hosts_file.h"
#include "stampede.pb.h"

#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace stampede::master {

enum class LinkState { Connecting, Joined, Ready, Running, Done, Lost, Busy, Refused };
const char* linkStateName(LinkState s);

struct WorkerLink {
  WorkerAddress address;
  std::string name;       // "host:port" as the operator wrote it
  zmq::socket_t socket;   // forward mode: our DEALER to this worker
  std::string routing_id; // reverse mode: the worker's id on our ROUTER
  LinkState state = LinkState::Connecting;
  std::string why;                                   // for Busy, Refused, Lost
  std::unique_ptr<common::HandshakeMonitor> monitor; // with keys: why a handshake failed
  std::string handshake_failure;

  // Handshake.
  std::vector<common::ClockSample> samples;
  int64_t clock_offset_ns = 0;
  int64_t rtt_ns = 0;
  uint32_t protocol = 0;
  std::string build;
  uint32_t cores = 0;
  uint32_t threads = 0;

  // Run.
  uint32_t index = 0;
  uint32_t users = 0;
  uint64_t first_vu = 0;
  uint64_t send_seq = 0;
  common::SequenceFilter filter;
  uint64_t wrong_run = 0;
  common::SteadyTime last_heard{};
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t error_tally = 0; // errors reported at once ({count: N} policy)
  uint32_t active_users = 0;
  bool final_received = false;
  common::SteadyTime final_at{};
  uint64_t started_after_halt = 0;
};

// The master's keys: with a secret, every control socket is a CURVE server; with allowed
// worker keys, a ZAP handler admits only those workers.
struct ClusterSecurity {
  std::string secret_z85;
  std::set<std::string> allowed_workers; // Z85 public keys; empty: any worker with our key
};

class Cluster {
public:
  Cluster(zmq::context_t& context, const common::Clock& clock, uint64_t run_id,
          ClusterSecurity security = {});

  // Forward mode: dial every address (all at once, not one after another).
  void dial(const std::vector<WorkerAddress>& addresses);
  // Reverse mode: bind a ROUTER; workers dial in and are admitted by the handshake.
  void listen(const std::string& endpoint);

  // Probes every worker for clock samples until each has answered `samples` times or
  // `timeout` has passed. Workers that never answered stay Connecting; Busy ones are marked.
  // In reverse mode, waits for `expect_workers` workers to dial in.
  void handshake(std::chrono::milliseconds timeout, int samples, size_t expect_workers = 0);

  // Waits up to `timeout` for one message from any worker and hands it to `on_message`;
  // then drains whatever else is queued. Returns false when nothing came.
  bool poll(std::chrono::milliseconds timeout,
            const std::function<void(WorkerLink&, const wire::Envelope&)>& on_message);

  void send(WorkerLink& link, wire::Envelope& envelope);
  // Sends to every worker in one of `states`.
  void broadcast(wire::Envelope& envelope, std::initializer_list<LinkState> states);

  // At most once a second: a Heartbeat to every worker in one of `states`.
  void heartbeat(std::initializer_list<LinkState> states);
  // After the handshake: handshake monitors only add to every poll from here on.
  void dropMonitors();
  // Frees every worker that joined but will not run (dry run, a failed start).
  void release();

  std::vector<WorkerLink>& links() { return links_; }
  uint64_t runId() const { return run_id_; }
  uint64_t droppedMessages() const;

private:
  WorkerLink* findByRoutingId(const std::string& id);
  void sendProbe(WorkerLink& link);
  void answerZap();
  void takeHandshakeFailures();

  zmq::context_t& context_;
  const common::Clock& clock_;
  uint64_t run_id_;
  // Before the links: destroyed after them, so that no link ever outlives the ZAP handler.
  std::optional<zmq::socket_t> zap_; // ZAP handler when worker keys are restricted
  std::vector<WorkerLink> links_;
  std::optional<zmq::socket_t> router_; // reverse mode
  std::unique_ptr<common::HandshakeMonitor> router_monitor_;
  ClusterSecurity security_;
  uint64_t garbage_ = 0;
  common::SteadyTime next_heartbeat_{};
};

} // namespace stampede::master
