// The scenario model of message-broker load (docs/scenario.md, "Messaging"): the `messaging:`
// section and the `publish:` and `subscribe:` steps, as the loader validated them. Immutable
// once loaded; read by every load thread.
#pragma once

#include "common/template.h"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace stampede::common {

// One broker of the failover list, "tcp://host:port" or, over TLS, "ssl://host:port".
struct BrokerUrl {
  std::string host;
  uint16_t port = 0;
  bool tls = false; // ssl:// or stomp+ssl://
  std::string text; // as written
};

struct ReconnectSpec {
  std::chrono::microseconds delay{std::chrono::milliseconds(500)}; // before a new round
  double multiplier = 1.0;                                         // per round, up to max_delay
  std::chrono::microseconds max_delay{std::chrono::seconds(10)};
  int attempts = 0; // rounds over the list; 0: no limit but the budget
  // No connection for this long after a loss (or at the first connect): reconnect_exhausted.
  std::chrono::microseconds budget{std::chrono::seconds(30)};
};

// STOMP heart-beating (messaging.heartbeat): what the client offers in its CONNECT (cx, cy); the
// broker's CONNECTED answer decides the intervals in use.
struct HeartbeatSpec {
  std::chrono::microseconds send{0};    // cx: we can send one this often; 0: we send none
  std::chrono::microseconds receive{0}; // cy: we want one this often; 0: we watch for none
  // Nothing from the broker for the negotiated interval times this: the connection is lost.
  double tolerance = 2.0;
};

// TLS settings (http.tls, messaging.tls).
struct TlsSpec {
  bool verify = true;
  // PEM text (the files' contents, read on the master and shipped), empty when not given.
  std::string ca_pem;
  std::string cert_pem;
  std::string key_pem;
  std::string ca_file, cert_file, key_file; // as written, for messages
};

struct MessagingSpec {
  enum class Protocol { Stomp };
  Protocol protocol = Protocol::Stomp;
  std::vector<BrokerUrl> urls; // tried in order
  ReconnectSpec reconnect;
  Template client_id; // empty source: none sent (no durable subscriptions then)
  std::optional<Template> user, password;
  HeartbeatSpec heartbeat;
  TlsSpec tls; // for ssl:// URLs
  // The start barrier (master/start_barrier.h): how long the master waits for every
  // subscription to be confirmed before any load starts; nullopt: `start_barrier: off`.
  std::optional<std::chrono::microseconds> start_barrier{std::chrono::seconds(30)};
};

// A destination as written, "queue://orders" or "topic://orders".
struct Destination {
  bool topic = false;
  std::string name;
  std::string text() const { return (topic ? "topic://" : "queue://") + name; }
};

struct PublishSpec {
  Destination to;
  Template body;
  std::vector<std::pair<std::string, Template>> properties; // JMS properties
  bool persistent = true;
  bool confirm = true; // wait for the broker's receipt
  std::chrono::microseconds timeout{std::chrono::seconds(5)};
};

struct SubscribeSpec {
  enum class Ack { Auto, Client };
  enum class OnEnd { Keep, Unsubscribe };
  Destination from;
  std::optional<Template> durable; // the subscription name; topics only
  Ack ack = Ack::Auto;
  int prefetch = 0; // 0: the broker's default
  int receive = 1;  // messages per iteration
  std::chrono::microseconds timeout{std::chrono::seconds(5)};
  std::optional<std::string> expect_body;               // body contains; error expect_body
  std::optional<std::chrono::microseconds> max_latency; // end to end; error max_latency
  OnEnd on_end = OnEnd::Keep;
};

} // namespace stampede::common
