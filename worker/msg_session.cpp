#include "worker/msg_session.h"

namespace stampede::worker {

const char* msgErrorKindName(MsgError e) {
  switch (e) {
  case MsgError::None:
    return "none";
  case MsgError::ConnectRefused:
    return "connect_refused";
  case MsgError::Unauthorized:
    return "unauthorized";
  case MsgError::ReconnectExhausted:
    return "reconnect_exhausted";
  case MsgError::ClientIdInUse:
    return "client_id_in_use";
  case MsgError::SendRejected:
    return "send_rejected";
  case MsgError::SendTimeout:
    return "send_timeout";
  case MsgError::SendInDoubt:
    return "send_in_doubt";
  case MsgError::DestinationError:
    return "destination_error";
  case MsgError::ReceiveTimeout:
    return "receive_timeout";
  case MsgError::Protocol:
    return "protocol";
  case MsgError::Tls:
    return "tls";
  case MsgError::Cancelled:
    return "cancelled";
  }
  return "internal";
}

std::string_view InMessage::property(std::string_view name) const {
  for (const auto& [n, v] : properties)
    if (n == name)
      return v;
  return {};
}

} // namespace stampede::worker
