// STOMP 1.2 frames, written and parsed by hand: a command line, "name:value" header lines, a
// blank line, a body and a NUL (stomp.github.io/stomp-specification-1.2.html). The parser takes
// bytes as they arrive, split anywhere, and refuses bad input with a reason; it never throws.
// One parser per connection, used on its load thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stampede::worker {

struct StompFrame {
  std::string command; // CONNECTED, MESSAGE, RECEIPT, ERROR (from the broker); SEND...
  std::vector<std::pair<std::string, std::string>> headers; // decoded, in order; repeats kept
  std::string body;
  // The first header of that name (STOMP 1.2: the first of repeated headers wins).
  std::optional<std::string_view> header(std::string_view name) const;
};

// Appends `frame` to `out`. Header names and values are escaped (\\ \n \r \c) except on
// CONNECT, as the spec asks. A body is sent without content-length when `text` is true and it
// holds no NUL (ActiveMQ then makes it a JMS TextMessage); otherwise with content-length.
void encodeStompFrame(const StompFrame& frame, std::string& out, bool text = true);

// A heart-beat header, "cx,cy" (milliseconds); nullopt when it is not two numbers.
struct StompHeartBeat {
  uint64_t send_ms = 0;    // cx: the sender can send one this often; 0: none
  uint64_t receive_ms = 0; // cy: the sender wants one this often; 0: none
};
std::optional<StompHeartBeat> parseStompHeartBeat(std::string_view value);
// The intervals in use (STOMP 1.2 "Heart-beating"): ours is what we offered in CONNECT, the
// broker's what it answered in CONNECTED (absent: 0,0). `send_ms`: we send at least this often;
// `receive_ms`: the broker sends at least this often. 0: none that way.
StompHeartBeat negotiateStompHeartBeat(StompHeartBeat ours, StompHeartBeat broker);

class StompParser {
public:
  static constexpr size_t kMaxHeadBytes = 64 * 1024; // command + headers
  static constexpr size_t kDefaultBodyLimit = 16 * 1024 * 1024;
  explicit StompParser(size_t body_limit = kDefaultBodyLimit) : body_limit_(body_limit) {}

  enum class Status { NeedMore, Frame, Error };
  // Consumes from `data` (bytes at hand, not yet consumed) and returns how many it used in
  // `used`. Status::Frame: `out` holds one whole frame (call again for the next with the rest).
  // Status::Error: error() says why; the connection must be dropped. Heart-beat EOLs between
  // frames are skipped.
  Status feed(std::string_view data, size_t& used, StompFrame& out);
  const std::string& error() const { return error_; }

private:
  Status fail(std::string why);
  bool parseHead(StompFrame& out);

  size_t body_limit_;
  StompFrame frame_;             // the frame being read
  std::string head_;             // the command and header lines so far
  std::string body_;             // the body so far
  std::optional<size_t> length_; // content-length of the frame being read
  bool in_body_ = false;
  bool after_body_ = false; // a content-length body is in: the NUL comes next
  std::string error_;
};

} // namespace stampede::worker
