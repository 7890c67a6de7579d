// The protocol-neutral seam between the load engine and a message broker: one MessagingSession
// per virtual user (its connection, with the failover list and reconnect policy, and its
// subscriptions). STOMP 1.2 is the one driver today (worker/stomp_session.cpp); an AMQP 1.0
// driver would implement the same class. Every call is made on the owning load thread.
#pragma once

#include "common/asio.h"
#include "common/messaging_spec.h"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace stampede::worker {

struct BeastTlsConfig; // worker/beast_connection.h

// Why a messaging operation failed. The names are the report's error kinds.
enum class MsgError {
  None,
  ConnectRefused,     // "connect_refused": no broker of the list took the first connection
  Unauthorized,       // "unauthorized": the broker refused the login
  ReconnectExhausted, // "reconnect_exhausted": lost, and no broker within attempts/budget
  ClientIdInUse,      // "client_id_in_use": still refused at the end of the budget
  SendRejected,       // "send_rejected": an ERROR instead of the receipt
  SendTimeout,        // "send_timeout": no receipt within the step's timeout
  SendInDoubt,        // "send_in_doubt": the connection dropped before the receipt
  DestinationError,   // "destination_error": the broker refused a subscription
  ReceiveTimeout,     // "receive_timeout": fewer messages than asked within the timeout
  Protocol,           // "protocol": a frame we could not parse, or an unexpected ERROR
  Tls,       // "tls": the TLS handshake failed (a certificate refused), at the first connect
  Cancelled, // the run halted: not an error
};
const char* msgErrorKindName(MsgError e);

struct MsgResult {
  MsgError error = MsgError::None;
  std::string detail; // human-readable, cold path
  bool ok() const { return error == MsgError::None; }
};

// Everything a session needs to connect, rendered for one virtual user.
struct ConnectionSettings {
  std::vector<common::BrokerUrl> urls;
  common::HeartbeatSpec heartbeat;
  // For ssl:// URLs: the thread's TLS settings (messaging.tls), shared by its sessions.
  std::shared_ptr<BeastTlsConfig> tls;
  common::ReconnectSpec reconnect;
  std::string client_id; // empty: none
  std::string user, password;
  bool has_login = false;
};

struct OutMessage {
  const common::Destination* to = nullptr;
  std::string_view body;
  const std::vector<std::pair<std::string, std::string>>* properties = nullptr;
  bool persistent = true;
};

struct InMessage {
  std::string body;
  std::vector<std::pair<std::string, std::string>> properties; // every header of the frame
  bool redelivered = false;
  std::string ack_id;
  std::string_view property(std::string_view name) const;
};

struct SubscriptionRequest {
  common::Destination from;
  std::string durable; // subscription name; empty: not durable
  bool client_ack = false;
  int prefetch = 0;
};

class MessagingSession {
public:
  virtual ~MessagingSession() = default;
  // Each operation connects first if it must (walking the URL list, with the reconnect policy)
  // and never throws: failures are in the result. Timeouts are on the steady clock.
  // Sends one message; with `confirm`, waits for the broker's receipt.
  virtual asio::awaitable<MsgResult> publish(const OutMessage& message, bool confirm,
                                             std::chrono::microseconds timeout) = 0;
  // Subscribes unless this session already holds that subscription, and waits until the broker
  // confirmed it (a receipt). Subscriptions are re-established after a reconnect.
  virtual asio::awaitable<MsgResult> subscribe(const SubscriptionRequest& request,
                                               std::chrono::microseconds timeout) = 0;
  // The next message of any subscription of this session.
  virtual asio::awaitable<MsgResult> receive(InMessage& out, std::chrono::microseconds timeout) = 0;
  virtual asio::awaitable<MsgResult> ack(const InMessage& message) = 0;
  // End of the run: with `unsubscribe`, durable subscriptions are removed; then disconnects.
  virtual asio::awaitable<void> close(bool unsubscribe) = 0;
  // Aborts the operation in flight (it completes with Cancelled) and every later one.
  virtual void cancel() noexcept = 0;
  // The run is ending: a wait between reconnect rounds or for a message ends now (the
  // operation completes with Cancelled) and no new one starts; a publish waiting for its
  // receipt goes on.
  virtual void stopRetrying() noexcept = 0;
  // Connections re-established after a loss, within the budget.
  virtual uint64_t reconnects() const = 0;
  // How long each of those took, in order: from the loss (seen by a read, a write or the
  // heart-beat watch) to the connection back up with its subscriptions.
  virtual const std::vector<std::chrono::microseconds>& reconnectTimes() const = 0;
  // Which broker of the list the session is on, for error reports.
  virtual std::string describePeer() const = 0;
};

std::unique_ptr<MessagingSession> makeStompSession(asio::io_context& io,
                                                   ConnectionSettings settings);

} // namespace stampede::worker
