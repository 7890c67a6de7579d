// The STOMP 1.2 driver of MessagingSession: one TCP (or TLS) connection per virtual user,
// frames by worker/stomp_codec, operations as coroutines on the load thread. One timer per
// session bounds each read and write (it cancels the socket when it fires). With heart-beats
// negotiated, a second timer sends an EOL when we have been quiet and drops the connection
// when the broker has been silent too long (a frozen broker: a loss, as a crash is).
#include "worker/beast_connection.h"
#include "worker/msg_session.h"
#include "worker/stomp_codec.h"
#include "worker/stomp_frames.h"

#include <poll.h>

#include <algorithm>
#include <array>
#include <deque>

namespace stampede::worker {
namespace {

using Clock = std::chrono::steady_clock;
using boost::system::error_code;
using std::chrono::microseconds;
using std::chrono::milliseconds;

bool isTlsError(const error_code& ec) {
  return ec && ec != asio::ssl::error::stream_truncated &&
         (ec.category() == asio::error::get_ssl_category() ||
          ec.category() == asio::ssl::error::get_stream_category());
}

struct Subscription {
  SubscriptionRequest request;
  std::string id;
};

class StompSession final : public MessagingSession {
public:
  StompSession(asio::io_context& io, ConnectionSettings settings)
      : io_(io), timer_(io), delay_timer_(io), heartbeat_timer_(io), write_gate_(io),
        settings_(std::move(settings)) {}
  ~StompSession() override { closeSocket(); }

  asio::awaitable<MsgResult> publish(const OutMessage& message, bool confirm,
                                     microseconds timeout) override {
    const auto deadline = Clock::now() + timeout;
    if (auto r = co_await ensureConnected(); !r.ok())
      co_return r;
    const std::string receipt = confirm ? std::to_string(++next_receipt_) : std::string();
    stompSendFrame(message, receipt, out_frame_);
    const bool sent_ok = co_await write(out_frame_, deadline);
    if (!sent_ok) {
      if (cancelled_)
        co_return MsgResult{MsgError::Cancelled, {}};
      co_return MsgResult{MsgError::SendInDoubt, "the connection to " + describePeer() +
                                                     " failed while sending: " + detail_};
    }
    if (!confirm)
      co_return MsgResult{};
    switch (co_await awaitReceipt(receipt, deadline)) {
    case Read::Frame:
      if (in_frame_.command == "ERROR")
        co_return MsgResult{MsgError::SendRejected, describeStompError(in_frame_)};
      co_return MsgResult{};
    case Read::Timeout:
      co_return MsgResult{MsgError::SendTimeout,
                          "no receipt from " + describePeer() + " within the step's timeout"};
    case Read::Lost:
      markLost();
      co_return MsgResult{MsgError::SendInDoubt, "the connection to " + describePeer() +
                                                     " dropped before the receipt: " + detail_};
    case Read::Bad:
      markLost();
      co_return MsgResult{MsgError::Protocol, detail_};
    case Read::Cancelled:
      break;
    }
    co_return MsgResult{MsgError::Cancelled, {}};
  }

  asio::awaitable<MsgResult> subscribe(const SubscriptionRequest& request,
                                       microseconds timeout) override {
    for (const auto& s : subs_)
      if (s.request.from.topic == request.from.topic && s.request.from.name == request.from.name &&
          s.request.durable == request.durable)
        co_return MsgResult{};
    if (auto r = co_await ensureConnected(); !r.ok())
      co_return r;
    Subscription sub{request, std::to_string(subs_.size() + 1)};
    auto r = co_await sendSubscribe(sub, Clock::now() + timeout);
    if (r.ok())
      subs_.push_back(std::move(sub));
    co_return r;
  }

  asio::awaitable<MsgResult> receive(InMessage& out, microseconds timeout) override {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (!inbox_.empty()) {
        out = std::move(inbox_.front());
        inbox_.pop_front();
        co_return MsgResult{};
      }
      // The run is over: waiting for more is not a request in flight.
      if (stop_retrying_)
        co_return MsgResult{MsgError::Cancelled, {}};
      if (auto r = co_await ensureConnected(); !r.ok())
        co_return r;
      receiving_ = true;
      const Read read = co_await readFrame(in_frame_, deadline);
      receiving_ = false;
      if (stop_retrying_ && read != Read::Frame)
        co_return MsgResult{MsgError::Cancelled, {}};
      switch (read) {
      case Read::Frame:
        if (in_frame_.command == "MESSAGE") {
          keep(in_frame_);
        } else if (in_frame_.command == "ERROR") {
          markLost();
          co_return MsgResult{MsgError::Protocol, describeStompError(in_frame_)};
        }
        continue;
      case Read::Timeout:
        co_return MsgResult{MsgError::ReceiveTimeout, {}};
      case Read::Lost:
        markLost(); // ensureConnected() reconnects and subscribes again, within the budget
        continue;
      case Read::Bad:
        markLost();
        co_return MsgResult{MsgError::Protocol, detail_};
      case Read::Cancelled:
        co_return MsgResult{MsgError::Cancelled, {}};
      }
    }
  }

  asio::awaitable<MsgResult> ack(const InMessage& message) override {
    if (!connected_)
      co_return MsgResult{}; // the broker redelivers it
    out_frame_.command = "ACK";
    out_frame_.headers.clear();
    out_frame_.headers.emplace_back("id", message.ack_id);
    out_frame_.body.clear();
    const bool written = co_await write(out_frame_, Clock::now() + std::chrono::seconds(5));
    if (!written && !cancelled_)
      markLost();
    co_return MsgResult{};
  }

  asio::awaitable<void> close(bool unsubscribe) override {
    if (cancelled_)
      co_return;
    const bool durable = std::any_of(subs_.begin(), subs_.end(), [](const Subscription& s) {
      return !s.request.durable.empty();
    });
    if (!connected_ && !(unsubscribe && durable))
      co_return;
    const MsgResult connected = co_await ensureConnected();
    if (!connected.ok())
      co_return;
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    for (const auto& s : subs_) {
      if (!unsubscribe || s.request.durable.empty())
        continue;
      // ActiveMQ removes a durable subscription only once its consumer is closed: first by
      // id, then by name.
      out_frame_.command = "UNSUBSCRIBE";
      out_frame_.headers = {{"id", s.id}};
      out_frame_.body.clear();
      const bool closed = co_await write(out_frame_, deadline);
      if (!closed)
        co_return;
      out_frame_.headers = {{"id", s.id}, {"activemq.subscriptionName", s.request.durable}};
      const bool written = co_await write(out_frame_, deadline);
      if (!written)
        co_return;
    }
    subs_.clear();
    out_frame_.command = "DISCONNECT";
    out_frame_.headers = {{"receipt", "bye"}};
    out_frame_.body.clear();
    // The receipt says the broker has handled every frame before it.
    if (co_await write(out_frame_, deadline))
      co_await awaitReceipt("bye", deadline);
    markLost();
    ever_connected_ = false;
  }

  void cancel() noexcept override {
    cancelled_ = true;
    error_code ignored;
    if (auto* socket = lowest())
      socket->cancel(ignored);
    delay_timer_.cancel();
    heartbeat_timer_.cancel();
    write_gate_.cancel();
  }

  void stopRetrying() noexcept override {
    stop_retrying_ = true;
    delay_timer_.cancel();
    if (receiving_) { // ends the wait; the connection stays up for close()
      error_code ignored;
      if (auto* socket = lowest())
        socket->cancel(ignored);
    }
  }

  uint64_t reconnects() const override { return reconnect_times_.size(); }
  const std::vector<microseconds>& reconnectTimes() const override { return reconnect_times_; }

  std::string describePeer() const override {
    if (current_url_ < settings_.urls.size())
      return settings_.urls[current_url_].text;
    return settings_.urls.empty() ? std::string("no broker") : settings_.urls.front().text;
  }

private:
  enum class Read { Frame, Timeout, Lost, Bad, Cancelled };

  void keep(StompFrame& frame) { inbox_.push_back(takeStompMessage(frame)); }

  // Reads until the broker's RECEIPT for `receipt` or an ERROR frame (both Read::Frame, the
  // frame in in_frame_; an ERROR drops the connection). MESSAGE frames meanwhile go to the
  // inbox; anything else is skipped.
  asio::awaitable<Read> awaitReceipt(std::string_view receipt, Clock::time_point deadline) {
    for (;;) {
      const Read read = co_await readFrame(in_frame_, deadline);
      if (read != Read::Frame ||
          (in_frame_.command == "RECEIPT" && in_frame_.header("receipt-id") == receipt))
        co_return read;
      if (in_frame_.command == "ERROR") {
        markLost();
        co_return read;
      }
      if (in_frame_.command == "MESSAGE")
        keep(in_frame_);
    }
  }

  // Whether the broker closed the connection while this session was not reading (a crash, a
  // failover): then the next message must go to a new connection, not into a dead one, where
  // it would be in doubt. One non-blocking read; bytes it finds are kept for the parser.
  // Over TLS the bytes belong to the TLS layer: a poll says whether the peer hung up with
  // nothing left to read.
  bool peerClosed() {
    if (tls_stream_) {
      // Readable with nothing to read: the peer's FIN (polled first, so that bytes arriving
      // in between count as data).
      pollfd fd{tls_stream_->next_layer().native_handle(), POLLIN | POLLRDHUP, 0};
      if (::poll(&fd, 1, 0) <= 0)
        return false;
      error_code ec;
      const size_t pending = tls_stream_->next_layer().available(ec);
      return ec || (pending == 0 && (fd.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0);
    }
    if (!tcp_)
      return true;
    error_code ec;
    const size_t n = tcp_->read_some(asio::buffer(chunk_), ec); // the socket is non-blocking
    if (ec == asio::error::would_block || ec == asio::error::try_again)
      return false;
    if (!ec) {
      rbuf_.append(chunk_.data(), n);
      last_received_ = Clock::now();
      return false;
    }
    return true;
  }

  BeastSocket* lowest() {
    if (tls_stream_)
      return &tls_stream_->next_layer();
    return tcp_ ? tcp_.get() : nullptr;
  }
  void closeSocket() {
    error_code ignored;
    if (auto* socket = lowest())
      socket->close(ignored);
    heartbeat_timer_.cancel();
  }
  void markLost() {
    if (connected_)
      lost_at_ = Clock::now();
    connected_ = false;
    closeSocket();
  }

  // Heart-beats, between operations as during them: a timer callback on the load thread.
  // Every `tick` it sends an EOL if nothing went out for a while, and it declares the
  // connection lost when nothing came in for the broker's interval times the tolerance. Bytes
  // that arrive while no operation reads stay in the socket: their count is the sign of life.
  void startHeartbeat() {
    if (send_every_.count() == 0 && silent_after_.count() == 0)
      return;
    last_received_ = last_sent_ = Clock::now();
    seen_pending_ = 0;
    microseconds tick = microseconds::max();
    if (send_every_.count() > 0)
      tick = std::min(tick, send_every_ / 3);
    if (silent_after_.count() > 0)
      tick = std::min(tick, silent_after_ / 8);
    heartbeat_tick_ = std::max(tick, microseconds(milliseconds(20)));
    armHeartbeat(connection_);
  }
  void armHeartbeat(uint64_t connection) {
    heartbeat_timer_.expires_after(heartbeat_tick_);
    heartbeat_timer_.async_wait(
        [this, alive = std::weak_ptr<int>(alive_), connection](const error_code& ec) {
          if (ec || alive.expired() || connection != connection_ || !connected_ || cancelled_)
            return;
          onHeartbeatTick(connection);
        });
  }
  void onHeartbeatTick(uint64_t connection) {
    const auto now = Clock::now();
    if (auto* socket = lowest()) {
      error_code ec;
      const size_t pending = socket->available(ec);
      if (!ec && pending > seen_pending_)
        last_received_ = now;
      seen_pending_ = pending;
    }
    if (silent_after_.count() > 0 && now - last_received_ >= silent_after_) {
      const auto quiet = std::chrono::duration_cast<milliseconds>(now - last_received_);
      silence_ = "no frame or heart-beat from " + describePeer() + " for " +
                 std::to_string(quiet.count()) + " ms (its heart-beat every " +
                 std::to_string(broker_every_.count() / 1000) + " ms, times the tolerance " +
                 std::to_string(settings_.heartbeat.tolerance).substr(0, 4) + ")";
      markLost(); // an operation waiting on the socket ends with the loss
      return;
    }
    if (send_every_.count() > 0 && !writing_ && now - last_sent_ >= send_every_ * 2 / 3) {
      // Not awaited: the tick goes on while the EOL is out; a frame written meanwhile waits
      // for it at the write gate. The stream is kept alive by the handler.
      writing_ = true;
      last_sent_ = now;
      auto done = [this, alive = std::weak_ptr<int>(alive_)](const error_code&, size_t) {
        if (alive.expired())
          return;
        writing_ = false;
        write_gate_.cancel();
      };
      static const char kEol = '\n';
      if (tls_stream_)
        asio::async_write(
            *tls_stream_, asio::buffer(&kEol, 1),
            [keep = tls_stream_, done](const error_code& ec, size_t n) { done(ec, n); });
      else
        asio::async_write(*tcp_, asio::buffer(&kEol, 1),
                          [keep = tcp_, done](const error_code& ec, size_t n) { done(ec, n); });
    }
    armHeartbeat(connection);
  }

  // The timer cancels the socket at `deadline`; a generation keeps a late firing from touching
  // the next operation.
  void arm(Clock::time_point deadline) {
    timed_out_ = false;
    const uint64_t generation = ++generation_;
    timer_.expires_at(deadline);
    timer_.async_wait([this, generation](const error_code& ec) {
      if (ec || generation != generation_)
        return;
      timed_out_ = true;
      error_code ignored;
      if (auto* socket = lowest())
        socket->cancel(ignored);
    });
  }
  void disarm() {
    ++generation_;
    timer_.cancel();
  }

  asio::awaitable<bool> write(const StompFrame& frame, Clock::time_point deadline) {
    wbuf_.clear();
    encodeStompFrame(frame, wbuf_);
    error_code ec;
    // A heart-beat EOL on its way: frames must not interleave with it.
    while (writing_) {
      write_gate_.expires_at(deadline);
      co_await write_gate_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (cancelled_)
        co_return false;
      if (writing_ && Clock::now() >= deadline) {
        detail_ = "write timed out";
        co_return false;
      }
    }
    if (!lowest() || (!connected_ && !connecting_)) {
      detail_ = silence_.empty() ? "the connection is closed" : silence_;
      co_return false;
    }
    writing_ = true;
    arm(deadline);
    if (tls_stream_)
      co_await asio::async_write(*tls_stream_, asio::buffer(wbuf_),
                                 asio::redirect_error(asio::use_awaitable, ec));
    else
      co_await asio::async_write(*tcp_, asio::buffer(wbuf_),
                                 asio::redirect_error(asio::use_awaitable, ec));
    disarm();
    writing_ = false;
    if (ec) {
      detail_ = timed_out_ ? "write timed out" : !silence_.empty() ? silence_ : ec.message();
      co_return false;
    }
    last_sent_ = Clock::now();
    co_return !cancelled_;
  }

  asio::awaitable<Read> readFrame(StompFrame& out, Clock::time_point deadline) {
    for (;;) {
      if (!rbuf_.empty()) {
        size_t used = 0;
        const auto status = parser_.feed(rbuf_, used, out);
        rbuf_.erase(0, used);
        if (status == StompParser::Status::Frame)
          co_return Read::Frame;
        if (status == StompParser::Status::Error) {
          detail_ = "bad frame from " + describePeer() + ": " + parser_.error();
          co_return Read::Bad;
        }
      }
      if (cancelled_)
        co_return Read::Cancelled;
      if (Clock::now() >= deadline)
        co_return Read::Timeout;
      if (!lowest() || (!connected_ && !connecting_)) {
        detail_ = silence_.empty() ? "the connection is closed" : silence_;
        co_return Read::Lost;
      }
      error_code ec;
      arm(deadline);
      const size_t n =
          tls_stream_
              ? co_await tls_stream_->async_read_some(asio::buffer(chunk_),
                                                      asio::redirect_error(asio::use_awaitable, ec))
              : co_await tcp_->async_read_some(asio::buffer(chunk_),
                                               asio::redirect_error(asio::use_awaitable, ec));
      disarm();
      if (cancelled_)
        co_return Read::Cancelled;
      last_read_error_ = ec;
      if (ec) {
        if (timed_out_)
          co_return Read::Timeout;
        if (!silence_.empty())
          detail_ = silence_;
        else if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated)
          detail_ = "the broker closed the connection";
        else
          detail_ = ec.message();
        co_return Read::Lost;
      }
      last_received_ = Clock::now();
      seen_pending_ = 0;
      rbuf_.append(chunk_.data(), n);
    }
  }

  asio::awaitable<MsgResult> connectOnce(size_t url_index, Clock::time_point deadline) {
    const auto& url = settings_.urls[url_index];
    current_url_ = url_index;
    closeSocket();
    ++connection_;
    silence_.clear();
    parser_ = StompParser();
    rbuf_.clear();
    inbox_.clear(); // unacknowledged messages come again
    error_code ec;
    asio::ip::tcp::resolver resolver(io_);
    const auto endpoints = co_await resolver.async_resolve(
        url.host, std::to_string(url.port), asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return MsgResult{MsgError::ConnectRefused,
                          "cannot resolve " + url.text + ": " + ec.message()};
    // New streams per connection: a heart-beat write of the old one may still hold it.
    tls_stream_.reset();
    tcp_.reset();
    if (url.tls) {
      if (!settings_.tls)
        co_return MsgResult{MsgError::Tls, url.text + ": no TLS settings"};
      if (!settings_.tls->error.empty())
        co_return MsgResult{MsgError::Tls, "messaging." + settings_.tls->error};
      tls_stream_ = std::make_shared<BeastTlsStream>(io_.get_executor(), settings_.tls->context);
      error_code not_address;
      asio::ip::make_address(url.host, not_address);
      // SNI names a host, never an address (RFC 6066, 3).
      if (not_address)
        SSL_set_tlsext_host_name(tls_stream_->native_handle(), url.host.c_str());
      if (settings_.tls->verify)
        tls_stream_->set_verify_callback(asio::ssl::host_name_verification(url.host));
    } else {
      tcp_ = std::make_shared<BeastSocket>(io_.get_executor());
    }
    connecting_ = true;
    MsgResult result = co_await handshake(url, endpoints, deadline);
    connecting_ = false;
    if (!result.ok()) {
      closeSocket();
      co_return result;
    }
    // The intervals in use: ours as offered, the broker's as answered.
    const auto& hb = settings_.heartbeat;
    const StompHeartBeat ours{uint64_t(hb.send.count() / 1000),
                              uint64_t(hb.receive.count() / 1000)};
    const auto broker = parseStompHeartBeat(in_frame_.header("heart-beat").value_or("0,0"))
                            .value_or(StompHeartBeat{});
    const StompHeartBeat in_use = negotiateStompHeartBeat(ours, broker);
    send_every_ = milliseconds(in_use.send_ms);
    broker_every_ = milliseconds(in_use.receive_ms);
    silent_after_ = microseconds(int64_t(double(broker_every_.count()) * hb.tolerance));
    co_return MsgResult{};
  }

  // TCP connect, TLS handshake, CONNECT and its answer.
  asio::awaitable<MsgResult> handshake(const common::BrokerUrl& url,
                                       const asio::ip::tcp::resolver::results_type& endpoints,
                                       Clock::time_point deadline) {
    error_code ec;
    BeastSocket& socket = *lowest();
    arm(deadline);
    co_await asio::async_connect(socket, endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && tls_stream_)
      co_await tls_stream_->async_handshake(asio::ssl::stream_base::client,
                                            asio::redirect_error(asio::use_awaitable, ec));
    disarm();
    if (cancelled_)
      co_return MsgResult{MsgError::Cancelled, {}};
    if (ec && tls_stream_ && !timed_out_ && isTlsError(ec))
      co_return MsgResult{MsgError::Tls,
                          url.text + ": TLS handshake failed: " + tlsDetail(ec, tls_stream_.get())};
    if (ec)
      co_return MsgResult{MsgError::ConnectRefused,
                          url.text + ": " + (timed_out_ ? "connect timed out" : ec.message())};
    error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    if (tcp_)
      socket.non_blocking(true, ignored); // for peerClosed(); asynchronous operations unaffected
    StompFrame connect;
    stompConnectFrame(settings_, url, connect);
    const bool sent_ok = co_await write(connect, deadline);
    if (!sent_ok)
      co_return MsgResult{cancelled_ ? MsgError::Cancelled : MsgError::ConnectRefused,
                          url.text + ": " + detail_};
    const Read read = co_await readFrame(in_frame_, deadline);
    switch (read) {
    case Read::Frame:
      break;
    case Read::Cancelled:
      co_return MsgResult{MsgError::Cancelled, {}};
    case Read::Timeout:
      co_return MsgResult{MsgError::ConnectRefused, url.text + ": no CONNECTED frame in time"};
    default:
      // TLS 1.3: a broker that refuses our certificate (or wants one) says so after the
      // handshake, with an alert in place of CONNECTED.
      if (tls_stream_ && isTlsError(last_read_error_))
        co_return MsgResult{MsgError::Tls, url.text + ": the broker refused the TLS session: " +
                                               tlsDetail(last_read_error_, tls_stream_.get())};
      co_return MsgResult{MsgError::ConnectRefused, url.text + ": " + detail_};
    }
    co_return classifyConnectAnswer(in_frame_, url, settings_.client_id);
  }

  asio::awaitable<MsgResult> sendSubscribe(const Subscription& sub, Clock::time_point deadline) {
    const std::string receipt = "sub-" + std::to_string(++next_receipt_);
    stompSubscribeFrame(sub.request, sub.id, receipt, out_frame_);
    const bool sent_ok = co_await write(out_frame_, deadline);
    if (!sent_ok) {
      markLost();
      co_return MsgResult{cancelled_ ? MsgError::Cancelled : MsgError::DestinationError,
                          "subscribing at " + describePeer() + ": " + detail_};
    }
    switch (co_await awaitReceipt(receipt, deadline)) {
    case Read::Frame:
      if (in_frame_.command == "ERROR")
        co_return MsgResult{MsgError::DestinationError, "subscribing to " +
                                                            sub.request.from.text() + ": " +
                                                            describeStompError(in_frame_)};
      co_return MsgResult{};
    case Read::Cancelled:
      co_return MsgResult{MsgError::Cancelled, {}};
    case Read::Timeout:
      co_return MsgResult{MsgError::DestinationError, "no receipt for the subscription to " +
                                                          sub.request.from.text() + " from " +
                                                          describePeer()};
    default:
      markLost();
      co_return MsgResult{MsgError::DestinationError,
                          "subscribing to " + sub.request.from.text() + ": " + detail_};
    }
  }

  // Walks the URL list, round after round, with the reconnect policy; then subscribes again.
  asio::awaitable<MsgResult> ensureConnected() {
    if (cancelled_)
      co_return MsgResult{MsgError::Cancelled, {}};
    if (connected_ && !peerClosed())
      co_return MsgResult{};
    markLost();
    const auto& policy = settings_.reconnect;
    const bool lost = ever_connected_;
    const std::string why_lost = silence_; // the next connect forgets it
    const auto start = Clock::now();
    const auto budget_end = start + policy.budget;
    auto delay = policy.delay;
    MsgResult last{MsgError::ConnectRefused, "no broker URL"};
    MsgResult in_use; // a client id refused in this walk: said even if a later try timed out
    for (int round = 0;; ++round) {
      for (size_t i = 0; i < settings_.urls.size(); ++i) {
        const auto attempt_end = std::min(budget_end, Clock::now() + std::chrono::seconds(10));
        last = co_await connectOnce(i, attempt_end);
        if (last.error == MsgError::Cancelled || last.error == MsgError::Unauthorized ||
            (!lost && last.error == MsgError::Tls))
          co_return last;
        if (last.error == MsgError::ClientIdInUse)
          in_use = last;
        if (!last.ok())
          continue;
        connected_ = true;
        ever_connected_ = true;
        startHeartbeat();
        for (const auto& sub : subs_)
          if (auto r = co_await sendSubscribe(sub, budget_end); !r.ok())
            co_return r;
        // From the loss; for a session idle then (the heart-beat watch saw it), from its next
        // operation: the time it waited for a broker.
        if (lost)
          reconnect_times_.push_back(
              std::chrono::duration_cast<microseconds>(Clock::now() - std::max(lost_at_, start)));
        co_return MsgResult{};
      }
      // The first connection: a refusal from every broker is final at once (a reconnect
      // policy is for a broker lost mid-run); a client id in use is retried, since a
      // half-open old connection may hold it until the broker notices.
      if (!lost && last.error == MsgError::ConnectRefused)
        break;
      if (stop_retrying_)
        co_return MsgResult{MsgError::Cancelled, {}};
      if (policy.attempts > 0 && round + 1 >= policy.attempts)
        break;
      if (Clock::now() + delay >= budget_end)
        break;
      delay_timer_.expires_after(delay);
      error_code ec;
      co_await delay_timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      if (cancelled_ || stop_retrying_)
        co_return MsgResult{MsgError::Cancelled, {}};
      delay = std::min(policy.max_delay,
                       microseconds(int64_t(double(delay.count()) * policy.multiplier)));
    }
    if (last.error == MsgError::ClientIdInUse || last.error == MsgError::Protocol)
      co_return last;
    if (!lost && !in_use.ok())
      co_return in_use;
    if (lost)
      co_return MsgResult{MsgError::ReconnectExhausted,
                          "lost the broker" + (why_lost.empty() ? "" : " (" + why_lost + ")") +
                              " and got none back within the reconnect budget and attempts; "
                              "last: " +
                              last.detail};
    co_return last;
  }

  asio::io_context& io_;
  // One of the two per connection (TLS or not); shared with a heart-beat write in flight.
  std::shared_ptr<BeastSocket> tcp_;
  std::shared_ptr<BeastTlsStream> tls_stream_;
  asio::steady_timer timer_;
  asio::steady_timer delay_timer_;
  asio::steady_timer heartbeat_timer_;
  asio::steady_timer write_gate_; // a frame to write waits here for a heart-beat EOL
  ConnectionSettings settings_;
  StompParser parser_;
  std::string rbuf_;
  std::string wbuf_;
  std::array<char, 16384> chunk_{};
  StompFrame in_frame_;
  StompFrame out_frame_;
  std::deque<InMessage> inbox_;
  std::vector<Subscription> subs_;
  std::string detail_;
  size_t current_url_ = 0;
  uint64_t next_receipt_ = 0;
  uint64_t generation_ = 0;
  std::vector<microseconds> reconnect_times_; // one per reconnect
  Clock::time_point lost_at_;
  uint64_t connection_ = 0; // counts connections: a heart-beat tick of an old one stops
  // Heart-beats in use on this connection (0: none that way).
  microseconds send_every_{0};
  microseconds broker_every_{0};
  microseconds silent_after_{0}; // broker_every_ times the tolerance
  microseconds heartbeat_tick_{0};
  Clock::time_point last_sent_, last_received_;
  size_t seen_pending_ = 0; // bytes waiting in the socket at the last tick
  std::string silence_;     // why the heart-beat watch dropped the connection
  error_code last_read_error_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0); // for callbacks that outlive us
  bool writing_ = false;    // a frame or a heart-beat EOL is being written
  bool connecting_ = false; // in handshake(): reads and writes before connected_
  bool connected_ = false;
  bool ever_connected_ = false;
  bool timed_out_ = false;
  bool cancelled_ = false;
  bool stop_retrying_ = false;
  bool receiving_ = false; // receive() waits in readFrame
};

} // namespace

std::unique_ptr<MessagingSession> makeStompSession(asio::io_context& io,
                                                   ConnectionSettings settings) {
  return std::make_unique<StompSession>(io, std::move(settings));
}

} // namespace stampede::worker
