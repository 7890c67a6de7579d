// The STOMP 1.2 driver of MessagingSession: one connection per virtual user
// (worker/stomp_transport: TCP or TLS, timed reads and writes, heart-beats), the failover list
// walked with the reconnect policy, subscriptions re-established, and the operations as
// coroutines on the load thread; the frames it writes are worker/stomp_frames'.
#include "worker/msg_session.h"
#include "worker/stomp_frames.h"
#include "worker/stomp_transport.h"

#include <algorithm>
#include <deque>

namespace stampede::worker {
namespace {

using Clock = std::chrono::steady_clock;
using boost::system::error_code;
using std::chrono::microseconds;
using std::chrono::milliseconds;

struct Subscription {
  SubscriptionRequest request;
  std::string id;
};

class StompSession final : public MessagingSession {
public:
  StompSession(asio::io_context& io, ConnectionSettings settings)
      : delay_timer_(io), transport_(io), settings_(std::move(settings)) {}

  asio::awaitable<MsgResult> publish(const OutMessage& message, bool confirm,
                                     microseconds timeout) override {
    const auto deadline = Clock::now() + timeout;
    if (auto r = co_await ensureConnected(); !r.ok())
      co_return r;
    const std::string receipt = confirm ? std::to_string(++next_receipt_) : std::string();
    stompSendFrame(message, receipt, out_frame_);
    const bool sent_ok = co_await transport_.write(out_frame_, deadline);
    if (!sent_ok) {
      if (cancelled_)
        co_return MsgResult{MsgError::Cancelled, {}};
      co_return MsgResult{MsgError::SendInDoubt,
                          "the connection to " + describePeer() +
                              " failed while sending: " + transport_.detail()};
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
      co_return MsgResult{MsgError::SendInDoubt,
                          "the connection to " + describePeer() +
                              " dropped before the receipt: " + transport_.detail()};
    case Read::Bad:
      markLost();
      co_return MsgResult{MsgError::Protocol, transport_.detail()};
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
      const Read read = co_await transport_.readFrame(in_frame_, deadline);
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
        co_return MsgResult{MsgError::Protocol, transport_.detail()};
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
    const bool written =
        co_await transport_.write(out_frame_, Clock::now() + std::chrono::seconds(5));
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
      const bool closed = co_await transport_.write(out_frame_, deadline);
      if (!closed)
        co_return;
      out_frame_.headers = {{"id", s.id}, {"activemq.subscriptionName", s.request.durable}};
      const bool written = co_await transport_.write(out_frame_, deadline);
      if (!written)
        co_return;
    }
    subs_.clear();
    out_frame_.command = "DISCONNECT";
    out_frame_.headers = {{"receipt", "bye"}};
    out_frame_.body.clear();
    // The receipt says the broker has handled every frame before it.
    if (co_await transport_.write(out_frame_, deadline))
      co_await awaitReceipt("bye", deadline);
    markLost();
    ever_connected_ = false;
  }

  void cancel() noexcept override {
    cancelled_ = true;
    transport_.cancel();
    delay_timer_.cancel();
  }

  void stopRetrying() noexcept override {
    stop_retrying_ = true;
    delay_timer_.cancel();
    if (receiving_) // ends the wait; the connection stays up for close()
      transport_.interrupt();
  }

  uint64_t reconnects() const override { return reconnect_times_.size(); }
  const std::vector<microseconds>& reconnectTimes() const override { return reconnect_times_; }

  std::string describePeer() const override {
    if (current_url_ < settings_.urls.size())
      return settings_.urls[current_url_].text;
    return settings_.urls.empty() ? std::string("no broker") : settings_.urls.front().text;
  }

private:
  using Read = StompTransport::Read;

  void keep(StompFrame& frame) { inbox_.push_back(takeStompMessage(frame)); }

  // Reads until the broker's RECEIPT for `receipt` or an ERROR frame (both Read::Frame, the
  // frame in in_frame_; an ERROR drops the connection). MESSAGE frames meanwhile go to the
  // inbox; anything else is skipped.
  asio::awaitable<Read> awaitReceipt(std::string_view receipt, Clock::time_point deadline) {
    for (;;) {
      const Read read = co_await transport_.readFrame(in_frame_, deadline);
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

  void markLost() {
    if (connected_)
      lost_at_ = Clock::now();
    connected_ = false;
    transport_.close();
  }

  asio::awaitable<MsgResult> connectOnce(size_t url_index, Clock::time_point deadline) {
    const auto& url = settings_.urls[url_index];
    current_url_ = url_index;
    inbox_.clear(); // unacknowledged messages come again
    if (auto r = co_await transport_.open(url, settings_.tls, deadline); !r.ok())
      co_return r;
    if (auto r = co_await handshake(url, deadline); !r.ok()) {
      transport_.close();
      co_return r;
    }
    // The intervals in use: ours as offered, the broker's as answered.
    const auto& hb = settings_.heartbeat;
    const StompHeartBeat ours{uint64_t(hb.send.count() / 1000),
                              uint64_t(hb.receive.count() / 1000)};
    const auto broker = parseStompHeartBeat(in_frame_.header("heart-beat").value_or("0,0"))
                            .value_or(StompHeartBeat{});
    heartbeat_ = negotiateStompHeartBeat(ours, broker);
    co_return MsgResult{};
  }

  // CONNECT and its answer.
  asio::awaitable<MsgResult> handshake(const common::BrokerUrl& url, Clock::time_point deadline) {
    StompFrame connect;
    stompConnectFrame(settings_, url, connect);
    if (!co_await transport_.write(connect, deadline))
      co_return MsgResult{cancelled_ ? MsgError::Cancelled : MsgError::ConnectRefused,
                          url.text + ": " + transport_.detail()};
    switch (co_await transport_.readFrame(in_frame_, deadline)) {
    case Read::Frame:
      break;
    case Read::Cancelled:
      co_return MsgResult{MsgError::Cancelled, {}};
    case Read::Timeout:
      co_return MsgResult{MsgError::ConnectRefused, url.text + ": no CONNECTED frame in time"};
    default:
      // TLS 1.3: a broker that refuses our certificate (or wants one) says so after the
      // handshake, with an alert in place of CONNECTED.
      if (const std::string refusal = transport_.tlsRefusal(); !refusal.empty())
        co_return MsgResult{MsgError::Tls,
                            url.text + ": the broker refused the TLS session: " + refusal};
      co_return MsgResult{MsgError::ConnectRefused, url.text + ": " + transport_.detail()};
    }
    co_return classifyConnectAnswer(in_frame_, url, settings_.client_id);
  }

  asio::awaitable<MsgResult> sendSubscribe(const Subscription& sub, Clock::time_point deadline) {
    const std::string receipt = "sub-" + std::to_string(++next_receipt_);
    stompSubscribeFrame(sub.request, sub.id, receipt, out_frame_);
    const bool sent_ok = co_await transport_.write(out_frame_, deadline);
    if (!sent_ok) {
      markLost();
      co_return MsgResult{cancelled_ ? MsgError::Cancelled : MsgError::DestinationError,
                          "subscribing at " + describePeer() + ": " + transport_.detail()};
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
                          "subscribing to " + sub.request.from.text() + ": " + transport_.detail()};
    }
  }

  // Walks the URL list, round after round, with the reconnect policy; then subscribes again.
  asio::awaitable<MsgResult> ensureConnected() {
    if (cancelled_)
      co_return MsgResult{MsgError::Cancelled, {}};
    if (connected_ && !transport_.peerClosed())
      co_return MsgResult{};
    markLost();
    const auto& policy = settings_.reconnect;
    const bool lost = ever_connected_;
    const std::string why_lost = transport_.silence(); // the next connect forgets it
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
        transport_.startHeartbeat(milliseconds(heartbeat_.send_ms),
                                  milliseconds(heartbeat_.receive_ms),
                                  settings_.heartbeat.tolerance, [this] { markLost(); });
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

  asio::steady_timer delay_timer_;
  StompTransport transport_;
  ConnectionSettings settings_;
  StompFrame in_frame_;
  StompFrame out_frame_;
  std::deque<InMessage> inbox_;
  std::vector<Subscription> subs_;
  size_t current_url_ = 0;
  uint64_t next_receipt_ = 0;
  std::vector<microseconds> reconnect_times_; // one per reconnect
  Clock::time_point lost_at_;
  StompHeartBeat heartbeat_; // in use on this connection (0: none that way)
  bool connected_ = false;
  bool ever_connected_ = false;
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
