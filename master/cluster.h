// The master's side of the control plane: the set of workers, the socket, the handshake
// (versions, clock offsets), and sending and receiving Envelopes. One ROUTER either way: it
// connects to every worker the master dials (forward mode), or dialling workers connect to it
// (reverse mode). A broadcast (Halt) is one small message per worker, sent before anything else
// queued. Control thread only.
#pragma once

#include "common/clock.h"
#include "common/clock_tracker.h"
#include "common/handshake_monitor.h"
#include "common/protocol.h"
#include "common/stats.h"
#include "master/hosts_file.h"
#include "stampede.pb.h"

#include <google/protobuf/arena.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace stampede::master {

// Left: the worker was stopped (SIGINT/SIGTERM) mid-run and sent its last figures first (Final
// with `leaving`): its numbers are complete, as for Done.
enum class LinkState { Connecting, Joined, Ready, Running, Done, Left, Lost, Busy, Refused };
const char* linkStateName(LinkState s);

struct WorkerLink {
  WorkerAddress address;
  std::string name;     // "host:port" as the operator wrote it
  std::string endpoint; // forward mode: what our ROUTER connected to
  // The worker's id on our ROUTER: ours (ZMQ_CONNECT_ROUTING_ID) when we dial it, the one it
  // came with when it dials us.
  std::string routing_id;
  LinkState state = LinkState::Connecting;
  std::string why;               // for Busy, Refused, Lost, Left
  std::string handshake_failure; // forward mode: why the security handshake failed, if it did

  // Handshake.
  std::vector<common::ClockSample> samples;
  int64_t clock_offset_ns = 0;
  int64_t rtt_ns = 0;
  uint32_t protocol = 0;
  std::string build;
  uint32_t cores = 0;
  uint32_t threads = 0;
  // Re-measured on every heartbeat the worker answers, from the handshake on (issue 17: a soak
  // lasts hours): the tracker's samples, the model last sent to the worker, and the largest
  // error bound of any offset the worker was given for its stamps (the handshake's first).
  common::ClockTracker clock_tracker;
  common::ClockModel clock_model;
  int64_t run_clock_error_ns = 0;

  // Run.
  uint32_t index = 0;
  uint32_t users = 0;
  uint64_t send_seq = 0;
  common::SequenceFilter filter;
  uint64_t wrong_run = 0;
  common::SteadyTime last_heard{};
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t error_tally = 0; // errors reported at once ({count: N} policy)
  uint32_t active_users = 0;
  // By feeder, from its Stats: the cursor's position, and how far it moved in the last one
  // (a place taken over in a run in progress continues past both: Rejoiner).
  std::vector<uint64_t> feeder_positions;
  std::vector<uint64_t> feeder_last_step;
  bool final_received = false;
  common::SteadyTime final_at{};
  // From its Final, when a Halt named the first error: its sends at or after that moment, and
  // its latest send on the master's clock.
  std::optional<uint64_t> sent_after_first_error;
  bool sent_count_complete = true;
  std::optional<common::SteadyTime> last_send;
  // Each time it left the run (lost, or stopped by its operator) and joined it (on_worker_lost:
  // rejoin, --max-workers), in seconds from the run's start.
  struct Event {
    double at_s = 0;
    const char* what = ""; // "lost" | "left" | "joined"
    std::string reason;    // "silent for 2.1s", "answered again", "dialled in in the place of..."
  };
  std::vector<Event> events;
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

  // Forward mode: dial every address from one ROUTER (all at once, not one after another).
  void dial(const std::vector<WorkerAddress>& addresses);
  // Reverse mode: bind a ROUTER; workers dial in and are admitted by the handshake.
  void listen(const std::string& endpoint);

  // Probes every worker for clock samples until each has answered `samples` times or
  // `timeout` has passed. Workers that never answered stay Connecting; Busy ones are marked.
  // In reverse mode, waits for `expect_workers` workers to dial in. Returns early once
  // `interrupted` says so (Ctrl-C), checked at least every 200 ms.
  void handshake(std::chrono::milliseconds timeout, int samples, size_t expect_workers = 0,
                 const std::function<bool()>& interrupted = {});

  // Waits up to `timeout` for one message from any worker and hands it to `on_message`;
  // then drains whatever else is queued. Returns false when nothing came.
  bool poll(std::chrono::milliseconds timeout,
            const std::function<void(WorkerLink&, const wire::Envelope&)>& on_message);

  void send(WorkerLink& link, wire::Envelope& envelope);
  // Sends to every worker in one of `states`.
  void broadcast(wire::Envelope& envelope, std::initializer_list<LinkState> states);

  // At most once a second: a Heartbeat to every worker in one of `states`.
  void heartbeat(std::initializer_list<LinkState> states);
  // One Heartbeat to `link`, stamped now for the worker's answer (a clock sample), with the
  // worker's clock model once there is one.
  void sendHeartbeat(WorkerLink& link);
  // Starts the link's clock tracker afresh from its handshake samples (link.samples).
  static void seedClock(WorkerLink& link);
  // After the handshake (forward mode): the handshake monitor only adds to every poll from
  // here on.
  void dropMonitors();
  // Frees every worker that joined but will not run (dry run, a failed start).
  void release();

  // A deque: a worker dialling in late is added without moving the links already handed out.
  std::deque<WorkerLink>& links() { return links_; }
  uint64_t runId() const { return run_id_; }
  uint64_t droppedMessages() const;

private:
  void openRouter();
  WorkerLink* linkFor(const zmq::message_t& routing_id); // nullptr: not one of ours
  void deliver(WorkerLink& link, const zmq::message_t& payload,
               const std::function<void(WorkerLink&, const wire::Envelope&)>& on_message);
  void sendProbe(WorkerLink& link);
  void answerZap();
  void takeHandshakeFailures();

  zmq::context_t& context_;
  const common::Clock& clock_;
  uint64_t run_id_;
  // Before the ROUTER: destroyed after it, so that no connection ever outlives the ZAP handler.
  std::optional<zmq::socket_t> zap_; // ZAP handler when worker keys are restricted
  std::deque<WorkerLink> links_;
  std::unordered_map<std::string, size_t> by_routing_id_; // into links_
  std::unordered_map<std::string, size_t> by_endpoint_;   // forward mode: monitor events
  std::optional<zmq::socket_t> router_;
  bool dialled_ = false;
  // After the ROUTER: stops watching it before it closes. Forward mode: every handshake; reverse
  // mode, with keys: dialling workers refused.
  std::unique_ptr<common::HandshakeMonitor> monitor_;
  ClusterSecurity security_;
  uint64_t garbage_ = 0;
  common::SteadyTime next_heartbeat_{};
  std::vector<zmq::message_t> frames_; // reused by poll()
  // What poll() decodes lives here until delivered. Reset, the arena keeps its first block: a
  // Stats from each of a thousand workers a second costs no heap allocation.
  static constexpr size_t kDecodeBlockBytes = 256 << 10; // a 20-step Stats takes ~150 KiB
  std::unique_ptr<char[]> decode_block_;
  google::protobuf::Arena decode_arena_;
};

} // namespace stampede::master
