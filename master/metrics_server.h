// --metrics-listen HOST:PORT: a small HTTP/1.1 server on a thread of its own that answers
// `GET /metrics` with the latest text the control thread published (metrics_text.h), and 404
// for anything else. One connection at a time, closed after each answer, each given 2 s to
// send its request: a scrape a second is all it serves. Plain sockets and poll(2): no HTTP
// library is needed for this much. publish() may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace stampede::master {

class MetricsServer {
public:
  // Binds and listens on `host_port` ("127.0.0.1:9464", "[::1]:9464", "localhost:0"), then
  // starts serving (an empty page until the first publish). Throws std::runtime_error naming
  // the address and the reason when it cannot bind.
  explicit MetricsServer(const std::string& host_port);
  ~MetricsServer(); // stops the thread and closes the socket
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void publish(std::string text);
  // "http://HOST:PORT/metrics" as bound (the port chosen, when 0 was asked).
  const std::string& url() const { return url_; }
  // How many GET /metrics were answered.
  uint64_t scrapes() const { return scrapes_.load(); }

private:
  void serve();
  void answer(int fd);

  int listen_fd_ = -1;
  int wake_fd_ = -1; // eventfd: the destructor wakes the thread
  std::string url_;
  std::mutex mutex_;
  std::shared_ptr<const std::string> text_;
  std::atomic<uint64_t> scrapes_{0};
  std::thread thread_;
};

} // namespace stampede::master
