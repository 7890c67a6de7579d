#include "worker/http1_request.h"

#include "worker/beast_connection.h"

#include <charconv>
#include <cstring>

namespace stampede::worker {
namespace {

using namespace std::string_view_literals;

constexpr std::string_view kUserAgent = "stampede/" STAMPEDE_VERSION;

// `wanted` in lower case.
bool isHeader(std::string_view name, std::string_view wanted) {
  if (name.size() != wanted.size())
    return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    if ((c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c) != wanted[i])
      return false;
  }
  return true;
}

} // namespace

std::string_view writeHttp1Request(const HttpRequest& request, bool keep_alive, std::string& into) {
  const auto& endpoint = *request.endpoint;
  // The scenario's own Host, User-Agent or Accept-Encoding replaces ours: never send one twice.
  bool own_host = false;
  bool own_agent = false;
  bool own_encoding = false;
  size_t headers_bytes = 0;
  if (request.headers) {
    for (const auto& header : *request.headers) {
      own_host = own_host || isHeader(header.first, "host");
      own_agent = own_agent || isHeader(header.first, "user-agent");
      own_encoding = own_encoding || isHeader(header.first, "accept-encoding");
      headers_bytes += header.first.size() + header.second.size() + 4;
    }
  }
  // Room for the longest request these pieces make; the string only ever grows, so that the
  // steady state neither allocates nor zero-fills, and the pieces are plain copies.
  constexpr size_t kFixedBytes = 160; // every literal below, a port and a Content-Length
  const size_t bound = request.method.size() + request.target.size() + endpoint.host.size() +
                       kUserAgent.size() + headers_bytes + request.body.size() + kFixedBytes;
  if (into.size() < bound)
    into.resize(bound);
  char* const begin = into.data();
  char* p = begin;
  const auto put = [&p](std::string_view piece) {
    std::memcpy(p, piece.data(), piece.size());
    p += piece.size();
  };
  put(request.method);
  *p++ = ' ';
  put(request.target.empty() ? "/"sv : request.target);
  put(" HTTP/1.1\r\n"sv);
  if (!own_host) {
    put("Host: "sv);
    const bool v6 = endpoint.host.find(':') != std::string::npos;
    if (v6)
      *p++ = '[';
    put(endpoint.host);
    if (v6)
      *p++ = ']';
    if (endpoint.port != (isTlsEndpoint(endpoint) ? 443 : 80)) {
      *p++ = ':';
      p = std::to_chars(p, p + 5, endpoint.port).ptr;
    }
    put("\r\n"sv);
  }
  if (!own_agent) {
    put("User-Agent: "sv);
    put(kUserAgent);
    put("\r\n"sv);
  }
  if (!own_encoding)
    put("Accept-Encoding: gzip\r\n"sv);
  if (request.headers) {
    for (const auto& [name, value] : *request.headers) {
      put(name);
      put(": "sv);
      put(value);
      put("\r\n"sv);
    }
  }
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH") {
    put("Content-Length: "sv);
    p = std::to_chars(p, p + 20, request.body.size()).ptr;
    put("\r\n"sv);
  }
  if (!keep_alive)
    put("Connection: close\r\n"sv);
  put("\r\n"sv);
  put(request.body);
  return {begin, size_t(p - begin)};
}

} // namespace stampede::worker
