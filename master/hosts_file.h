// The worker list of `master --workers hosts.txt`: one `host[:port]` per line (default port
// 7700, IPv6 as `[addr]:port`), then optional `weight=N` and `key=<Z85>` in any order, `#`
// comments and blank lines. Parsed and checked before anything is contacted. Any thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stampede::master {

constexpr uint16_t kDefaultWorkerPort = 7700;

struct WorkerAddress {
  std::string host; // a name, an IPv4 address, or an IPv6 address without brackets
  uint16_t port = kDefaultWorkerPort;
  double weight = 1; // share of the load relative to the other workers (times its cores)
  std::string key;   // the worker's CURVE public key (40 Z85 characters), empty when not given
  int line = 0;      // in the hosts file, for messages

  // "tcp://host:port", with an IPv6 host in brackets: what ZeroMQ connects to.
  std::string endpoint() const;
};

// Throws common::ConfigError (file:line:col of the offending token) on the first bad line,
// on a host:port listed twice, on an unreadable file, and when no worker is listed at all.
std::vector<WorkerAddress> parseHostsFile(const std::string& path);
// The same, for text already read; file_name is only for messages.
std::vector<WorkerAddress> parseHostsText(const std::string& text, const std::string& file_name);

} // namespace stampede::master
