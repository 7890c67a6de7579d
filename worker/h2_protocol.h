// The HTTP/2 client side of one connection on libnghttp2, without I/O: bytes from the server go
// in (receive()), bytes for the server come out (send()), and requests become streams whose
// results (status, headers, body, bytes on the wire, or an error kind) land in H2Stream. The
// Asio engine (h2_client.cpp) moves the bytes; unit tests move them to an nghttp2 server session
// in memory. Used on one load thread.
#pragma once

#include "worker/http_client.h"

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stampede::worker {

class H2Protocol;

// One request and what became of it. Owned by the caller (a session), reused request after
// request; between submit() and its close, H2Protocol writes into it.
struct H2Stream {
  // Set by the caller before submit().
  bool keep_body = true; // else only the first kBodyExcerptBytes of the body are kept
  size_t max_body = 0;   // with keep_body: a longer body fails with BodyTooLarge

  // Results, reset by submit().
  int32_t id = -1; // -1: not submitted, or closed
  bool closed = false;
  int status = 0;
  // Response fields, names in lower case as HTTP/2 sends them, back to back in one buffer that
  // keeps its capacity from response to response (no allocation per field).
  struct Field {
    uint32_t name, name_size, value, value_size; // offsets into field_text
  };
  std::string field_text;
  std::vector<Field> fields;
  void clearFields() {
    field_text.clear();
    fields.clear();
  }
  // The first field of that name (case-insensitive), as header() wants it.
  std::optional<std::string_view> field(std::string_view name) const;
  HeaderList headerList() const; // cold: error reports
  std::string body;              // as received (gzip not decoded)
  bool gzip = false;             // content-encoding: gzip
  // The response's Content-Length (-1: none) and the DATA bytes received: they must agree
  // (nghttp2's HTTP messaging checks are off, for speed: this is the one that matters).
  int64_t content_length = -1;
  uint64_t data_bytes = 0;
  bool head = false;      // a HEAD request: no body follows whatever Content-Length says
  uint64_t bytes_in = 0;  // frame headers and payloads of this stream's frames received
  uint64_t bytes_out = 0; // the same, sent
  bool got_frame = false; // a frame of the response arrived
  // Never processed by the server (above a GOAWAY's last stream id): safe to send again.
  bool unprocessed = false;
  // Set by the caller, kept by submit(): the request's place in line (its first attempt's).
  // Streams left out go again oldest first, ahead of newer requests.
  uint64_t ticket = 0;
  TransportError error = TransportError::None;
  std::string detail;

  // Request body, sent from this view (valid until the stream closes).
  std::string_view body_out;
  size_t body_sent = 0;
  H2Protocol* owner = nullptr;
  // Called once the stream closes, by whoever drains H2Protocol::closed() (never from inside
  // nghttp2).
  std::function<void()> on_closed;
};

// nghttp2's allocations for the sessions of one load thread, recycled by size class: a
// request's stream, frames and header buffers come from lists, not from malloc (a sixth of the
// client's instructions per request with glibc's). Blocks go back to their list, never to the
// system, until the H2Memory goes; it must outlive the sessions that use it. One thread only.
class H2Memory {
public:
  H2Memory();
  ~H2Memory();
  H2Memory(const H2Memory&) = delete;
  H2Memory& operator=(const H2Memory&) = delete;
  nghttp2_mem* mem() { return &mem_; }

  void* allocate(size_t size) noexcept;
  void release(void* block) noexcept;
  void* reallocate(void* block, size_t size) noexcept;

private:
  static constexpr size_t kClasses = 8; // 64 bytes to 8 KiB, by powers of two; larger: malloc
  struct Free {
    Free* next;
  };
  Free* free_[kClasses] = {};
  nghttp2_mem mem_;
};

struct H2Settings {
  uint32_t window = 1 << 20;  // bytes: each stream's receive window (http.h2.window)
  uint32_t streams = 1;       // streams this connection carries at most (for its own window)
  H2Memory* memory = nullptr; // nghttp2's allocations; null: malloc
};

// Whether a stream that failed goes again, on another connection, after `attempt` (0: the
// first) on a connection that had completed streams before (`reused`). A request the server
// never processed (left out by a GOAWAY's last stream id, or never sent) is safe to send again:
// it goes until a connection takes it, up to kH2MaxAttempts (a server that ends every
// connection after a few streams leaves some streams out more than once; they go again oldest
// first, see wakeOrder()). One that died on a
// reused connection before any byte of its answer (the server closed an idle connection) goes
// once more, as on the other engines.
constexpr int kH2MaxAttempts = 16;
bool sendAgain(const H2Stream& stream, bool reused, int attempt);
// Puts closed streams in the order their owners are to be woken: the ones the server left out
// first, oldest request (ticket) first, so that they are sent again before the next requests of
// the streams that completed (which would otherwise take a new connection's first places, and
// leave the same streams out again and again).
void wakeOrder(std::vector<H2Stream*>& closed);

class H2Protocol {
public:
  explicit H2Protocol(const H2Settings& settings);
  ~H2Protocol();
  H2Protocol(const H2Protocol&) = delete;
  H2Protocol& operator=(const H2Protocol&) = delete;

  // Queues a request. `authority` is host[:port]; `headers` are sent as given, names lowered;
  // connection-specific ones (Host, Connection...) are dropped. Returns false with
  // stream.error set when nghttp2 refuses it (the connection is going away).
  bool submit(H2Stream& stream, std::string_view method, std::string_view scheme,
              std::string_view authority, std::string_view path, const HeaderList* headers,
              std::string_view body, bool default_agent, bool default_encoding);
  // Feeds bytes received. False on a connection error: every open stream has failed then.
  bool receive(const uint8_t* data, size_t size);
  // Appends the bytes nghttp2 has to send to `out`.
  void send(std::string& out);
  // The stream is no longer wanted (timeout, cancel): RST_STREAM CANCEL is queued and nothing
  // more is written into it.
  void forget(H2Stream& stream) noexcept;
  // The connection is gone (or never came): every open stream fails with `error`.
  void fail(TransportError error, const std::string& detail) noexcept;

  // Streams closed since the last call, in order; the caller wakes their owners.
  std::vector<H2Stream*>& closed() { return closed_; }
  size_t openStreams() const { return open_.size(); }
  // GOAWAY received, or a connection error: no new stream may start here.
  bool goingAway() const { return going_away_ || broken_; }
  // Neither side has anything more to say (after GOAWAY, or a fatal error).
  bool finished() const;

private:
  friend struct H2Callbacks;
  H2Stream* find(int32_t id) const {
    for (const auto& [open_id, stream] : open_)
      if (open_id == id)
        return stream;
    return nullptr;
  }
  void close(H2Stream& stream) noexcept;

  nghttp2_session* session_ = nullptr;
  std::vector<std::pair<int32_t, H2Stream*>> open_;
  std::vector<H2Stream*> closed_;
  bool going_away_ = false;
  bool broken_ = false;
  uint32_t goaway_code_ = 0;
  int32_t goaway_last_id_ = 0;
  std::string lowered_; // header names in lower case, for one submit()
};

} // namespace stampede::worker
