#include "master/embedded_worker.h"

#include "common/keys.h"
#include "worker/daemon.h"

#include <fmt/format.h>

#include <atomic>
#include <thread>
#include <unistd.h>

namespace stampede::master {
namespace {

class EmbeddedWorker : public LocalWorker {
public:
  EmbeddedWorker(zmq::context_t& context, const LocalWorkerOptions& options)
      : endpoint_(fmt::format("inproc://stampede-embedded-{}", ::getpid())),
        daemon_(context, daemonOptions(endpoint_, options)) {
    daemon_.open();
    thread_ = std::thread([this] { daemon_.run(stop_); });
  }
  ~EmbeddedWorker() override {
    stop_ = true;
    thread_.join();
  }
  WorkerAddress address() const override {
    WorkerAddress a;
    a.host = endpoint_;
    return a;
  }

private:
  static worker::DaemonOptions daemonOptions(const std::string& endpoint,
                                             const LocalWorkerOptions& options) {
    worker::DaemonOptions o;
    o.listen = endpoint;
    o.threads = options.threads;
    o.heartbeat_timeout = options.heartbeat_timeout;
    o.quiet = true;
    // With --key, the embedded worker speaks CURVE too: one code path, keys or not.
    if (!options.master_secret.empty())
      o.master_public_key = common::publicFromSecret(options.master_secret);
    return o;
  }

  std::string endpoint_;
  std::atomic<bool> stop_{false};
  worker::WorkerDaemon daemon_;
  std::thread thread_;
};

} // namespace

std::unique_ptr<LocalWorker> startEmbeddedWorker(zmq::context_t& context,
                                                 const LocalWorkerOptions& options) {
  return std::make_unique<EmbeddedWorker>(context, options);
}

} // namespace stampede::master
