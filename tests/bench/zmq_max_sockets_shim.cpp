// LD_PRELOAD shim for tests/bench/master_scale.sh only: raises ZMQ_MAX_SOCKETS on every ZeroMQ
// context the process creates (default 1023 in libzmq), from STAMPEDE_BENCH_ZMQ_MAX_SOCKETS
// (default 8192). A master with a DEALER per worker opened three ZeroMQ sockets per worker it
// dialled (its DEALER, the handshake monitor's PAIR and the PAIR libzmq creates for
// zmq_socket_monitor), so with the default limit it could not dial more than about 340 workers
// ("--workers: Too many open files"). Today's master dials every worker from one ROUTER; the
// shim stays so that the bench can measure older builds past that limit. It is not a fix.
#include <dlfcn.h>
#include <zmq.h>

#include <cstdlib>

extern "C" void* zmq_ctx_new() {
  using CtxNew = void* (*)();
  static const auto real = reinterpret_cast<CtxNew>(dlsym(RTLD_NEXT, "zmq_ctx_new"));
  if (real == nullptr)
    return nullptr;
  void* context = real();
  if (context != nullptr) {
    const char* text = std::getenv("STAMPEDE_BENCH_ZMQ_MAX_SOCKETS");
    const int wanted = text ? std::atoi(text) : 8192;
    if (wanted > 0)
      zmq_ctx_set(context, ZMQ_MAX_SOCKETS, wanted);
  }
  return context;
}
