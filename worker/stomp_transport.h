// One STOMP connection's bytes, for the STOMP driver (worker/stomp_session.cpp): a TCP stream,
// or TLS over it for ssl:// URLs; whole frames written and read under a deadline (one timer
// cancels the socket when it fires); a hang-up noticed while nobody read; and heart-beats,
// between operations as during them. The session walks the failover list and speaks STOMP.
// Every call is made on the owning load thread.
#pragma once

#include "worker/beast_connection.h"
#include "worker/msg_session.h"
#include "worker/stomp_codec.h"

#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace stampede::worker {

class StompTransport {
public:
  using Clock = std::chrono::steady_clock;
  enum class Read { Frame, Timeout, Lost, Bad, Cancelled };

  explicit StompTransport(asio::io_context& io);
  ~StompTransport();
  StompTransport(const StompTransport&) = delete;
  StompTransport& operator=(const StompTransport&) = delete;

  // Closes the current connection, then resolves, connects and (for url.tls, with `tls`)
  // handshakes, by `deadline`. Errors: ConnectRefused, Tls, Cancelled.
  asio::awaitable<MsgResult> open(const common::BrokerUrl& url,
                                  const std::shared_ptr<BeastTlsConfig>& tls,
                                  Clock::time_point deadline);
  // Writes `frame` whole, after a heart-beat EOL on its way; false on failure (detail()).
  asio::awaitable<bool> write(const StompFrame& frame, Clock::time_point deadline);
  // The next frame from the broker.
  asio::awaitable<Read> readFrame(StompFrame& out, Clock::time_point deadline);

  // Heart-beats in use on this connection (0: none that way): an EOL when nothing went out
  // for 2/3 of `send_every`; nothing in for `silent_after` (the broker's interval,
  // `broker_every`, times `tolerance`) closes the connection and calls `on_silence`.
  void startHeartbeat(std::chrono::microseconds send_every, std::chrono::microseconds broker_every,
                      double tolerance, std::function<void()> on_silence);

  // Whether the broker closed the connection while nobody read (a crash, a failover): then
  // the next frame must go to a new connection, not into a dead one, where it would be in
  // doubt. True when closed.
  bool peerClosed();
  void close();
  // Aborts the operation in flight (it completes with Cancelled) and every later one.
  void cancel() noexcept;
  // Ends the read or write in flight (Lost), leaving the connection up.
  void interrupt() noexcept;

  // Why the last operation failed; why the heart-beat watch closed the connection (or empty).
  const std::string& detail() const { return detail_; }
  const std::string& silence() const { return silence_; }
  bool timedOut() const { return timed_out_; }
  // The broker refused our TLS session after the handshake (TLS 1.3 says so with an alert in
  // place of the first frame): why, or empty.
  std::string tlsRefusal();

private:
  using error_code = boost::system::error_code;
  BeastSocket* lowest();
  void arm(Clock::time_point deadline);
  void disarm();
  void armHeartbeat(uint64_t connection);
  void onHeartbeatTick(uint64_t connection);

  asio::io_context& io_;
  // One of the two per connection (TLS or not); shared with a heart-beat write in flight.
  std::shared_ptr<BeastSocket> tcp_;
  std::shared_ptr<BeastTlsStream> tls_stream_;
  asio::steady_timer timer_;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer write_gate_; // a frame to write waits here for a heart-beat EOL
  std::string peer_;              // the URL as written, for messages
  StompParser parser_;
  std::string rbuf_;
  std::string wbuf_;
  std::array<char, 16384> chunk_{};
  std::string detail_;
  std::string silence_;
  error_code last_read_error_;
  uint64_t generation_ = 0;
  uint64_t connection_ = 0; // counts connections: a heart-beat tick of an old one stops
  std::chrono::microseconds send_every_{0};
  std::chrono::microseconds broker_every_{0};
  std::chrono::microseconds silent_after_{0};
  std::chrono::microseconds heartbeat_tick_{0};
  double tolerance_ = 2.0;
  std::function<void()> on_silence_;
  Clock::time_point last_sent_, last_received_;
  size_t seen_pending_ = 0; // bytes waiting in the socket at the last tick
  std::shared_ptr<int> alive_ = std::make_shared<int>(0); // for callbacks that outlive us
  bool open_ = false;                                     // connected, and not closed since
  bool writing_ = false; // a frame or a heart-beat EOL is being written
  bool timed_out_ = false;
  bool cancelled_ = false;
};

} // namespace stampede::worker
