// `worker --allow-target`: the networks (CIDR) and host names a worker may load. A scenario
// aimed anywhere else is refused at Prepare, before any request. Names are resolved when a
// scenario is checked, not once at start-up. Control thread only.
#pragma once

#include "common/scenario.h"

#include <boost/asio/ip/address.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace stampede::worker {

class TargetPolicy {
public:
  // "127.0.0.1/32,10.0.0.0/8,::1/128,target.internal"; throws std::invalid_argument naming a
  // bad entry.
  static TargetPolicy parse(std::string_view list);

  bool empty() const { return networks_.empty() && names_.empty(); }
  // "" when every host the scenario names is allowed; otherwise why not, in one line.
  std::string check(const common::Scenario& scenario) const;
  // "" when `host` (a name or a literal address) resolves only to allowed addresses.
  std::string checkHost(const std::string& host) const;
  const std::string& text() const { return text_; }

private:
  struct Network {
    boost::asio::ip::address base;
    int prefix = 0;
  };
  bool allows(const boost::asio::ip::address& address) const;

  std::string text_;
  std::vector<Network> networks_;
  std::vector<std::string> names_; // resolved at check time
};

} // namespace stampede::worker
