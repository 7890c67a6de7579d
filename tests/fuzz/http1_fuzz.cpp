// libFuzzer target: the Beast engine's HTTP/1.1 response parser (worker::Http1ResponseParser)
// on bytes as a server could send them. The first two bytes are options: a HEAD request or
// not, the body limit, whether the connection closes after the last byte, and a piece size.
// The rest is what the server sends, parsed twice as a session would (response after response
// on one connection, what a feed leaves unconsumed fed again with what arrives next): once as
// it all arrived at once, once in pieces. The parser promises the same results however the
// bytes arrive (http1_parser.h): a response that completes one way must complete the same way
// the other.
#include "worker/http1_parser.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

using stampede::worker::Http1ResponseParser;

namespace {

struct Response {
  bool ok = false; // done() without an error
  int status = 0;
  bool keep_alive = false;
  bool gzip = false;
  std::string head;
  std::string body;
  size_t consumed = 0;
};

// A failed response ends the connection: where in the bytes the failure was noticed depends on
// how they arrived, and nothing reads it.
bool operator==(const Response& a, const Response& b) {
  if (!a.ok || !b.ok)
    return a.ok == b.ok;
  return a.status == b.status && a.keep_alive == b.keep_alive && a.gzip == b.gzip &&
         a.head == b.head && a.body == b.body && a.consumed == b.consumed;
}

// Parses responses off `wire` until one fails or does not keep the connection, the bytes run
// out, or 8 responses, the connection delivering `piece` bytes at a time (0: all at once).
std::vector<Response> parseAll(std::string_view wire, size_t piece, bool head_request,
                               size_t body_limit, bool eof) {
  std::vector<Response> out;
  Http1ResponseParser parser(body_limit);
  std::string pending; // received, not yet consumed
  size_t offset = 0;   // of wire, received so far
  auto receive = [&] {
    const size_t n = piece == 0 ? wire.size() - offset : std::min(piece, wire.size() - offset);
    pending.append(wire.substr(offset, n));
    offset += n;
  };
  receive();
  while (out.size() < 8) {
    parser.start(head_request);
    Response r;
    boost::system::error_code ec;
    size_t last_used = 0; // of pending by the feed that finished the response
    for (;;) {
      const size_t used = parser.feed(pending, ec);
      if (used > pending.size())
        __builtin_trap();
      r.consumed += used;
      if (ec || parser.done()) {
        last_used = used; // the response may be views of pending: erased after the copy
        break;
      }
      pending.erase(0, used);
      if (offset == wire.size()) {
        if (eof)
          parser.feedEof(ec);
        break;
      }
      receive();
    }
    r.ok = !ec && parser.done();
    if (r.ok) {
      r.status = parser.status();
      r.keep_alive = parser.keepAlive();
      r.gzip = parser.gzip();
      r.head = parser.head();
      r.body = parser.body();
      (void)parser.header("content-type");
      (void)parser.fields();
      if (r.body.size() > body_limit)
        __builtin_trap();
    }
    out.push_back(std::move(r));
    if (!out.back().ok || !out.back().keep_alive)
      break;
    pending.erase(0, last_used);
    if (pending.empty() && offset == wire.size())
      break;
  }
  return out;
}

void printAll(const std::string& how, const std::vector<Response>& responses) {
  std::fprintf(stderr, "%s: %zu responses\n", how.c_str(), responses.size());
  for (const Response& r : responses)
    std::fprintf(stderr,
                 "  ok=%d status=%d keep_alive=%d gzip=%d consumed=%zu head=%zuB body=%zuB\n", r.ok,
                 r.status, r.keep_alive, r.gzip, r.consumed, r.head.size(), r.body.size());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2)
    return 0;
  const bool head_request = data[0] & 1;
  const bool eof = data[0] & 2;
  static const size_t kLimits[] = {0, 16, 4096, Http1ResponseParser::kDefaultBodyLimit};
  const size_t body_limit = kLimits[(data[0] >> 2) & 3];
  const size_t piece = 1 + data[1] % 64;
  const std::string_view wire(reinterpret_cast<const char*>(data) + 2, size - 2);

  const auto whole = parseAll(wire, 0, head_request, body_limit, eof);
  const auto pieces = parseAll(wire, piece, head_request, body_limit, eof);
  if (whole != pieces) {
    // The same bytes, parsed differently for arriving in pieces: show how, for triage.
    printAll("whole", whole);
    printAll("in pieces of " + std::to_string(piece), pieces);
    __builtin_trap();
  }
  return 0;
}
