#include "worker/stomp_frames.h"

namespace stampede::worker {
namespace {

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

} // namespace

std::string stompDestination(const common::Destination& d) {
  return (d.topic ? "/topic/" : "/queue/") + d.name;
}

std::string describeStompError(const StompFrame& frame) {
  std::string out(frame.header("message").value_or(""));
  std::string_view body(frame.body);
  body = body.substr(0, body.find('\n'));
  if (!body.empty())
    out += (out.empty() ? "" : ": ") + std::string(body.substr(0, 300));
  return out.empty() ? "the broker sent an ERROR frame" : out;
}

void stompConnectFrame(const ConnectionSettings& settings, const common::BrokerUrl& url,
                       StompFrame& out) {
  const auto& hb = settings.heartbeat;
  out.command = "CONNECT";
  out.headers = {{"accept-version", "1.2"},
                 {"host", url.host},
                 {"heart-beat", std::to_string(hb.send.count() / 1000) + "," +
                                    std::to_string(hb.receive.count() / 1000)}};
  if (!settings.client_id.empty())
    out.headers.emplace_back("client-id", settings.client_id);
  if (settings.has_login) {
    out.headers.emplace_back("login", settings.user);
    out.headers.emplace_back("passcode", settings.password);
  }
  out.body.clear();
}

void stompSubscribeFrame(const SubscriptionRequest& request, const std::string& id,
                         const std::string& receipt, StompFrame& out) {
  out.command = "SUBSCRIBE";
  out.headers = {{"id", id},
                 {"destination", stompDestination(request.from)},
                 {"ack", request.client_ack ? "client-individual" : "auto"}};
  if (!request.durable.empty())
    out.headers.emplace_back("activemq.subscriptionName", request.durable);
  if (request.prefetch > 0)
    out.headers.emplace_back("activemq.prefetchSize", std::to_string(request.prefetch));
  out.headers.emplace_back("receipt", receipt);
  out.body.clear();
}

void stompSendFrame(const OutMessage& message, const std::string& receipt, StompFrame& out) {
  out.command = "SEND";
  out.headers.clear();
  out.headers.emplace_back("destination", stompDestination(*message.to));
  out.headers.emplace_back("persistent", message.persistent ? "true" : "false");
  if (message.properties)
    for (const auto& p : *message.properties)
      out.headers.push_back(p);
  if (!receipt.empty())
    out.headers.emplace_back("receipt", receipt);
  out.body.assign(message.body);
}

MsgResult classifyConnectAnswer(const StompFrame& answer, const common::BrokerUrl& url,
                                const std::string& client_id) {
  if (answer.command == "CONNECTED")
    return MsgResult{};
  if (answer.command != "ERROR")
    return MsgResult{MsgError::Protocol, url.text + ": expected CONNECTED, got " + answer.command};
  const std::string why = describeStompError(answer);
  if (contains(why, "InvalidClientID") || contains(why, "already connected"))
    return MsgResult{MsgError::ClientIdInUse,
                     "client id '" + client_id + "' is in use at " + url.text + " (" + why +
                         "); give each virtual user its own, like \"x-{{vu}}\""};
  if (contains(why, "Security") || contains(why, "uthenticat") || contains(why, "password") ||
      contains(why, "User name"))
    return MsgResult{MsgError::Unauthorized, url.text + ": " + why};
  return MsgResult{MsgError::Protocol, url.text + ": " + why};
}

InMessage takeStompMessage(StompFrame& frame) {
  InMessage m;
  m.redelivered = frame.header("redelivered") == "true";
  m.ack_id.assign(frame.header("ack").value_or(frame.header("message-id").value_or("")));
  m.body = std::move(frame.body);
  m.properties = std::move(frame.headers);
  return m;
}

} // namespace stampede::worker
