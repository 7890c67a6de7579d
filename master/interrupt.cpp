#include "master/interrupt.h"

#include "master/halt_policy.h"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <thread>
#include <unistd.h>

namespace stampede::master {
namespace {

// 1 after the first Ctrl-C (stop gracefully), 2 after the second (stop now).
volatile std::sig_atomic_t g_interrupted = 0;

// How long the queued Halt and Stop get to reach the wire before the process exits.
constexpr auto kLastSendsGrace = std::chrono::milliseconds(50);

extern "C" void onAlarm(int) {
  _exit(kExitInterrupted);
}

extern "C" void onInterrupt(int) {
  // A second Ctrl-C means "now": the operator gave up on the graceful stop. The control
  // thread tells the running workers first (exitNow); should it be stuck somewhere, the alarm
  // exits anyway a second later.
  if (g_interrupted) {
    g_interrupted = 2;
    // Armed only now (sigaction is async-signal-safe): no SIGALRM is ours before.
    struct sigaction on_alarm {};
    on_alarm.sa_handler = onAlarm;
    sigaction(SIGALRM, &on_alarm, nullptr);
    alarm(1);
    return;
  }
  g_interrupted = 1;
}

} // namespace

void catchInterrupts() {
  std::signal(SIGINT, onInterrupt);
  std::signal(SIGTERM, onInterrupt);
}

bool interrupted() {
  return g_interrupted != 0;
}

bool interruptedTwice() {
  return g_interrupted > 1;
}

void exitNow(Cluster& cluster) {
  wire::Envelope halt;
  halt.mutable_halt()->set_reason(wire::HALT_REASON_INTERRUPTED);
  cluster.broadcast(halt, {LinkState::Running});
  wire::Envelope stop;
  stop.mutable_stop();
  cluster.broadcast(stop, {LinkState::Joined, LinkState::Ready});
  // Sends are queued: give ZeroMQ's I/O thread a moment to put them on the wire.
  std::this_thread::sleep_for(kLastSendsGrace);
  std::fflush(stdout);
  _exit(kExitInterrupted);
}

} // namespace stampede::master
