// The Beast engine's HTTP/1.1 response parser. The common response (HTTP/1.1, Content-Length, all
// of it in the bytes at hand) is parsed in one pass and left in place; anything else (chunked,
// split over reads, delimited by the end of the connection, 1xx, HEAD, 204/304) goes through
// Beast's basic_parser, with the same results. One per session, reused for every response: the
// steady state allocates nothing. Used on its session's load thread only.
#pragma once

#include "common/error_context.h"

#include <boost/system/error_code.hpp>

#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>

namespace stampede::worker {

// The value of the first field called `name` (case-insensitive) in a raw header block: a status
// line, then "Name: value" lines (CRLF or LF); leading and trailing blanks trimmed. A view of
// `head`; allocation-free.
std::optional<std::string_view> findHeader(std::string_view head, std::string_view name);

class Http1ResponseParser {
public:
  static constexpr size_t kDefaultBodyLimit = 64 * 1024 * 1024;
  // The status line and header fields together; over it: http::error::header_limit. The curl
  // engine holds responses to the same limit.
  static constexpr size_t kMaxHeadBytes = 64 * 1024;
  // What of a body that is not kept (start(..., false)) body() still holds.
  static constexpr size_t kBodyPrefixBytes = 1024;

  // `body_limit`: the most of a body that is kept; a longer one (declared or as it arrives) is
  // http::error::body_limit, at once.
  explicit Http1ResponseParser(size_t body_limit = kDefaultBodyLimit);
  ~Http1ResponseParser();
  Http1ResponseParser(const Http1ResponseParser&) = delete;
  Http1ResponseParser& operator=(const Http1ResponseParser&) = delete;

  // Begins the next response; `head_request`: it answers a HEAD, so no body follows.
  // `keep_body` false: the body is parsed but only its first kBodyPrefixBytes are kept, and its
  // length has no limit.
  void start(bool head_request, bool keep_body = true);

  // Parses from `data`, the bytes received and not yet consumed, and returns how many of them
  // this response used. Then done(), or `ec` holds an http::error (a malformed response), or
  // neither: call again with the rest and what arrives next. A done() response may be views of
  // `data`: keep those bytes unchanged until start().
  size_t feed(std::string_view data, boost::system::error_code& ec);
  // The peer closed the connection: completes a body delimited by the close; otherwise `ec` is
  // http::error::end_of_stream (nothing of the response arrived) or partial_message.
  void feedEof(boost::system::error_code& ec);

  bool done() const { return done_; }
  bool gotSome() const; // any byte of this response arrived
  int status() const { return status_; }
  bool keepAlive() const { return keep_alive_; } // the connection may carry the next request
  bool gzip() const { return gzip_; }            // Content-Encoding: gzip; body() is still encoded
  // The status line and header fields up to and with the blank line, as received; empty until
  // the header is complete.
  std::string_view head() const { return head_; }
  // The body as received, less the chunked framing; complete once done() (without keep_body,
  // its first kBodyPrefixBytes).
  std::string_view body() const { return body_; }
  const common::HeaderList& trailers() const;

  // The first field of that name in the head, else in the trailers; valid until start().
  std::optional<std::string_view> header(std::string_view name) const;
  // Every header field then every trailer field (cold path: it allocates).
  common::HeaderList fields() const;

private:
  struct Slow; // basic_parser and its buffers: created for the first response that needs them
  Slow& slow();
  void finishSlow();

  size_t body_limit_;
  bool head_request_ = false;
  bool keep_body_ = true;
  bool done_ = false;
  bool consumed_any_ = false; // of this response: then only basic_parser may go on
  bool seen_ = false;         // fed any byte of this response
  bool slow_active_ = false;  // basic_parser has begun this response
  bool keep_alive_ = false;
  bool gzip_ = false;
  int status_ = 0;
  std::string_view head_;
  std::string_view body_;
  std::unique_ptr<Slow> slow_;
};

} // namespace stampede::worker
