// What a curl transfer brought back: the response head and body as curl's write callbacks hand
// them over, kept within the same limits as the Beast engine's, and the error kind of a failed
// transfer. One per session, reused from request to request; load thread only.
#pragma once

#include "worker/gzip_decoder.h"
#include "worker/http_client.h"

#include <curl/curl.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace stampede::worker {

// The report's error kind of a failed transfer; `os_errno` tells connect failures apart.
TransportError curlErrorKind(CURLcode rc, long os_errno);

class CurlResponse {
public:
  // Points the easy handle's write and header callbacks here.
  void attach(CURL* easy);
  // Before a request. With `keep_body` the body is kept whole up to `max_body` (over it the
  // transfer fails and bodyTooLarge() tells); otherwise only its first kBodyExcerptBytes.
  void reset(bool keep_body, uint64_t max_body);

  bool keepBody() const { return keep_body_; }
  uint64_t maxBody() const { return max_body_; }
  bool bodyTooLarge() const { return body_too_large_; }
  bool headTooLarge() const { return head_too_large_; }
  // Status line and header lines as received (the last block after "100 Continue").
  uint64_t headerBytes() const { return header_bytes_; }
  // For HttpResponse::body: the body as kept, or the decoded first bytes of a gzip body nobody
  // reads (for an error report). Valid until the next reset().
  std::string_view body();
  std::optional<std::string_view> header(std::string_view name) const;
  HeaderList headers() const; // cold path: error reports

private:
  static size_t onWrite(char* data, size_t size, size_t count, void* userp) noexcept;
  static size_t onHeader(char* data, size_t size, size_t count, void* userp) noexcept;

  std::string body_;                  // all of it with keep_body_, else its first kBodyExcerptBytes
  bool keep_body_ = true;             // of the request in flight (HttpRequest::keep_body)
  uint64_t max_body_ = 0;             // http.max_body
  bool body_too_large_ = false;       // onWrite refused a kept body over max_body_
  bool head_too_large_ = false;       // onHeader refused a head over kMaxHeadBytes
  std::unique_ptr<GzipDecoder> gzip_; // after the first gzip body nobody reads
  std::string raw_headers_;           // the last response's header block, parsed on demand
  uint64_t header_bytes_ = 0;
};

} // namespace stampede::worker
