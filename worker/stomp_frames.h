// What the STOMP driver says and hears, as pure functions of frames: the CONNECT, SUBSCRIBE and
// SEND frames it writes (with ActiveMQ's header names for durable subscriptions and prefetch),
// a broker's answer to CONNECT classified as a MsgError, and an ERROR frame on one line. The
// session (worker/stomp_session.cpp) does the I/O around them.
#pragma once

#include "worker/msg_session.h"
#include "worker/stomp_codec.h"

#include <string>

namespace stampede::worker {

// "/topic/x" or "/queue/x".
std::string stompDestination(const common::Destination& d);
// What an ERROR frame of the broker says, on one line (its message header, then the first
// line of its body, cut at 300 bytes).
std::string describeStompError(const StompFrame& frame);

// CONNECT for `url`: STOMP 1.2, the heart-beats offered, the client id and login if any.
void stompConnectFrame(const ConnectionSettings& settings, const common::BrokerUrl& url,
                       StompFrame& out);
// SUBSCRIBE with subscription `id`, asking for `receipt`.
void stompSubscribeFrame(const SubscriptionRequest& request, const std::string& id,
                         const std::string& receipt, StompFrame& out);
// SEND of `message`, asking for `receipt` unless it is empty.
void stompSendFrame(const OutMessage& message, const std::string& receipt, StompFrame& out);

// The broker's answer to CONNECT: None for CONNECTED; ClientIdInUse, Unauthorized or Protocol
// for an ERROR (by what ActiveMQ says), with a one-line detail that names `url`.
MsgResult classifyConnectAnswer(const StompFrame& answer, const common::BrokerUrl& url,
                                const std::string& client_id);

// A MESSAGE frame as the engine sees it (the frame's body and headers are moved out).
InMessage takeStompMessage(StompFrame& frame);

} // namespace stampede::worker
