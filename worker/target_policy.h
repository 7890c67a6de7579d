// `worker --allow-target`: the networks (CIDR) and host names a worker may load. A scenario
// whose static target (or constant absolute step URL) lies elsewhere is refused at Prepare,
// before any request; every connection is checked again on the address actually connected
// (allows()), which covers redirects, templated hosts and a name that resolves elsewhere at
// connect time. Names in the list are resolved when a scenario is checked (resolved()), not
// once at start-up.
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

  // No list given (a list whose names resolve to nothing is not empty: it allows nothing).
  bool empty() const { return text_.empty(); }
  // "" when the scenario's target and every constant absolute step URL resolve only to allowed
  // addresses; otherwise why not, in one line. Templated hosts are left to allows() at connect.
  // Control thread (it resolves names, blocking).
  std::string check(const common::Scenario& scenario) const;
  // "" when `host` (a name or a literal address) resolves only to allowed addresses.
  std::string checkHost(const std::string& host) const;

  // This policy with its names resolved now into exact addresses: what the load threads check
  // with allows(). A name that does not resolve allows nothing.
  TargetPolicy resolved() const;
  // Whether a connection to `address` is allowed, by the networks only (names count once
  // resolved()). No lookup, no allocation: any thread, per new connection.
  bool allows(const boost::asio::ip::address& address) const;
  // The refusal of `address` in one line, for an error's detail (cold path).
  std::string refusal(const boost::asio::ip::address& address) const;
  const std::string& text() const { return text_; }

private:
  struct Network {
    boost::asio::ip::address base;
    int prefix = 0;
  };
  // allows(), and the names resolved now (blocking).
  bool allowsResolving(const boost::asio::ip::address& address) const;

  std::string text_;
  std::vector<Network> networks_;
  std::vector<std::string> names_; // resolved at check time
};

} // namespace stampede::worker
