#include "master/metrics_server.h"

#include <fmt/format.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdexcept>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace stampede::master {
namespace {

// A request is a line and a few headers: anything longer is not a scrape.
constexpr size_t kMaxRequest = 8192;
constexpr int kRequestTimeoutMs = 2000;

struct HostPort {
  std::string host;
  std::string port;
};

HostPort splitHostPort(const std::string& text) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::runtime_error(
        fmt::format("--metrics-listen {}: expected HOST:PORT, e.g. 127.0.0.1:9464", text));
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 ||
      std::stoi(port) > 65535)
    throw std::runtime_error(
        fmt::format("--metrics-listen {}: the port must be 0..65535, got \"{}\"", text, port));
  return {host, port};
}

bool sendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    sent += size_t(n);
  }
  return true;
}

std::string response(int status, const char* reason, const std::string& type,
                     const std::string& body) {
  return fmt::format("HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n"
                     "Connection: close\r\n\r\n{}",
                     status, reason, type, body.size(), body);
}

} // namespace

MetricsServer::MetricsServer(const std::string& host_port)
    : text_(std::make_shared<const std::string>()) {
  const auto [host, port] = splitHostPort(host_port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0)
    throw std::runtime_error(
        fmt::format("--metrics-listen {}: cannot resolve: {}", host_port, ::gai_strerror(rc)));
  std::string error = "no address";
  for (addrinfo* a = found; a && listen_fd_ < 0; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 16) != 0) {
      error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (listen_fd_ < 0)
    throw std::runtime_error(
        fmt::format("--metrics-listen {}: cannot listen: {}", host_port, error));
  sockaddr_storage bound{};
  socklen_t length = sizeof bound;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &length);
  char address[INET6_ADDRSTRLEN] = "?";
  int bound_port = 0;
  if (bound.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&bound);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, address, sizeof address);
    bound_port = ntohs(v6->sin6_port);
    url_ = fmt::format("http://[{}]:{}/metrics", address, bound_port);
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&bound);
    ::inet_ntop(AF_INET, &v4->sin_addr, address, sizeof address);
    bound_port = ntohs(v4->sin_port);
    url_ = fmt::format("http://{}:{}/metrics", address, bound_port);
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  thread_ = std::thread([this] { serve(); });
}

MetricsServer::~MetricsServer() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  if (listen_fd_ >= 0)
    ::close(listen_fd_);
  if (wake_fd_ >= 0)
    ::close(wake_fd_);
}

void MetricsServer::publish(std::string text) {
  auto shared = std::make_shared<const std::string>(std::move(text));
  std::lock_guard lock(mutex_);
  text_ = std::move(shared);
}

void MetricsServer::serve() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    if (fds[1].revents)
      return;
    if (fds[0].revents & POLLIN) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        answer(fd);
        ::close(fd);
      }
    }
  }
}

void MetricsServer::answer(int fd) {
  std::string request;
  char buffer[2048];
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < kMaxRequest) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd pfd[2] = {{fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (left.count() <= 0 || ::poll(pfd, 2, int(left.count())) <= 0 || pfd[1].revents)
      return;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0)
      return;
    request.append(buffer, size_t(n));
  }
  const auto line_end = request.find("\r\n");
  const std::string line = request.substr(0, line_end);
  const auto first_space = line.find(' ');
  const auto second_space = line.find(' ', first_space + 1);
  if (first_space == std::string::npos || second_space == std::string::npos) {
    sendAll(fd, response(400, "Bad Request", "text/plain", "bad request\n"));
    return;
  }
  const std::string method = line.substr(0, first_space);
  std::string path = line.substr(first_space + 1, second_space - first_space - 1);
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") {
    sendAll(fd, response(404, "Not Found", "text/plain", "only /metrics is served here\n"));
    return;
  }
  if (method != "GET" && method != "HEAD") {
    sendAll(fd, response(405, "Method Not Allowed", "text/plain", "GET /metrics\n"));
    return;
  }
  std::shared_ptr<const std::string> text;
  {
    std::lock_guard lock(mutex_);
    text = text_;
  }
  auto reply = response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", *text);
  if (method == "HEAD")
    reply.resize(reply.size() - text->size());
  if (sendAll(fd, reply))
    scrapes_.fetch_add(1);
}

} // namespace stampede::master
