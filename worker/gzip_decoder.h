// Decodes gzip response bodies (Content-Encoding: gzip) for both HTTP engines' needs: whole
// bodies the run reads (Beast), and the first bytes of one nobody reads, for an error report
// (both). Used on one load thread; each session owns its own.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace stampede::worker {

// Decodes gzip bodies (RFC 1952, members back to back) with zlib's inflate (libz, which libcurl
// loads anyway). Beast's header-only port of inflate was used before: at the end of some short
// streams it kept input bytes it had not used, so the trailer looked truncated. The inflate
// state and the output buffer are kept across responses: the steady state allocates nothing.
class GzipDecoder {
public:
  GzipDecoder() = default;
  GzipDecoder(const GzipDecoder&) = delete;
  GzipDecoder& operator=(const GzipDecoder&) = delete;
  ~GzipDecoder();
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

  z_stream& stream(); // made on first use, then reset per member

  std::unique_ptr<z_stream> stream_;
  std::string buffer_; // all of it usable: grown, never shrunk nor cleared (no refill per use)
};

} // namespace stampede::worker
