// Where requests go: the `target` URL and absolute step URLs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stampede::common {

// Where requests go: parsed from `target` or from an absolute step URL.
struct Endpoint {
  std::string scheme; // "http" or "https"
  std::string host;
  uint16_t port = 0;
  std::string base_path; // "" or "/api" (no trailing slash)
  bool tls() const { return scheme == "https"; }
};

// Parses "http://host[:port][/base]"; std::nullopt when it is not such a URL.
std::optional<Endpoint> parseEndpoint(std::string_view url);

} // namespace stampede::common
