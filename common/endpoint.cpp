#include "common/endpoint.h"

#include "common/text.h"

#include <algorithm>
#include <charconv>

namespace stampede::common {

std::optional<Endpoint> parseEndpoint(std::string_view url) {
  Endpoint e;
  if (iequalsPrefix(url, "http://")) {
    e.scheme = "http";
    e.port = 80;
    url.remove_prefix(7);
  } else if (iequalsPrefix(url, "https://")) {
    e.scheme = "https";
    e.port = 443;
    url.remove_prefix(8);
  } else {
    return std::nullopt;
  }
  // A base URL is joined with step paths, so a query or fragment in it has no sensible meaning.
  if (url.find_first_of("?#") != std::string_view::npos)
    return std::nullopt;
  const size_t slash = url.find('/');
  const std::string_view authority = url.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view{} : url.substr(slash);

  std::string_view host;
  std::string_view port;
  bool has_port = false;
  if (!authority.empty() && authority.front() == '[') {
    // IPv6 literal; the brackets are URL syntax, not part of the address.
    const size_t close = authority.find(']');
    if (close == std::string_view::npos)
      return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        return std::nullopt;
      has_port = true;
      port = after.substr(1);
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(),
                                     [](char c) { return isHex(c) || c == ':' || c == '.'; }))
      return std::nullopt;
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port = authority.substr(colon + 1);
    }
    // Userinfo ("user:pw@host") is refused: credentials belong in headers, not in reports.
    if (host.empty() || !std::all_of(host.begin(), host.end(), [](char c) {
          return isAlnum(c) || c == '-' || c == '.' || c == '_';
        }))
      return std::nullopt;
  }
  if (has_port) {
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 ||
        value > 65535)
      return std::nullopt;
    e.port = static_cast<uint16_t>(value);
  }
  if (std::any_of(path.begin(), path.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' ' || c == 0x7f; }))
    return std::nullopt;
  while (!path.empty() && path.back() == '/')
    path.remove_suffix(1);
  e.host = std::string(host);
  e.base_path = std::string(path);
  return e;
}

} // namespace stampede::common
