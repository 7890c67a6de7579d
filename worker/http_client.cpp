#include "worker/http_client.h"

namespace stampede::worker {

const char* errorKindName(TransportError e) {
  switch (e) {
  case TransportError::None:
    return "none";
  case TransportError::Resolve:
    return "resolve";
  case TransportError::ConnectRefused:
    return "connect_refused";
  case TransportError::Connect:
    return "connect";
  case TransportError::Timeout:
    return "timeout";
  case TransportError::Reset:
    return "reset";
  case TransportError::Tls:
    return "tls";
  case TransportError::Protocol:
    return "protocol";
  case TransportError::BodyTooLarge:
    return "body_too_large";
  case TransportError::Cancelled:
    return "cancelled";
  case TransportError::GeneratorFdExhausted:
    return "generator_fd_exhausted";
  case TransportError::TargetNotAllowed:
    return "target_not_allowed";
  case TransportError::StreamReset:
    return "stream_reset";
  case TransportError::RefusedStream:
    return "refused_stream";
  case TransportError::GoAway:
    return "goaway";
  }
  return "unknown";
}

} // namespace stampede::worker
