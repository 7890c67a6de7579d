#include "worker/listen_policy.h"

#include <boost/asio/ip/address.hpp>

namespace stampede::worker {

bool isLoopbackEndpoint(std::string_view endpoint) {
  if (endpoint.starts_with("ipc://") || endpoint.starts_with("inproc://"))
    return true;
  if (!endpoint.starts_with("tcp://"))
    return false;
  auto host = endpoint.substr(6);
  if (host.starts_with("[")) {
    auto close = host.find(']');
    if (close == host.npos)
      return false;
    host = host.substr(1, close - 1);
  } else {
    host = host.substr(0, host.rfind(':'));
  }
  if (host == "localhost")
    return true;
  boost::system::error_code ec;
  auto address = boost::asio::ip::make_address(std::string(host), ec);
  return !ec && address.is_loopback();
}

} // namespace stampede::worker
