// Decodes gzip response bodies (Content-Encoding: gzip) for both HTTP engines' needs: whole
// bodies the run reads (Beast), and the first bytes of one nobody reads, for an error report
// (both). Used on one load thread; each session owns its own.
#pragma once

#include <boost/beast/zlib/inflate_stream.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace stampede::worker {

// Decodes gzip bodies (RFC 1952, members back to back) with Beast's port of zlib's inflate,
// which is header-only (nothing more to link). The inflate state and the output buffer are kept
// across responses: the steady state allocates nothing.
class GzipDecoder {
public:
  // Decodes `in` into `out`, a view valid until the next decode(). Returns nullptr, or why `in`
  // is not a gzip body of at most `limit` decoded bytes (kTooLarge when it is longer).
  const char* decode(std::string_view in, size_t limit, std::string_view& out);
  // What the first bytes of a gzip body decode to, at most `limit` of it, into `out` as
  // decode(); checks nothing (the rest is missing), and is empty where that fails.
  void decodePrefix(std::string_view in, size_t limit, std::string_view& out);
  static constexpr const char* kTooLarge = "decoded body over http.max_body";

private:
  // The size of the member header at `pos` (RFC 1952, 2.3), or 0 with `error` set.
  static size_t headerSize(std::string_view in, size_t pos, const char*& error);

  boost::beast::zlib::inflate_stream inflate_;
  std::string buffer_; // all of it usable: grown, never shrunk nor cleared (no refill per use)
};

} // namespace stampede::worker
