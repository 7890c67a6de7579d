// libFuzzer target: the STOMP 1.2 frame parser (worker::StompParser) on bytes as a broker could
// send them. The first byte is the piece size for the second pass. The bytes are parsed twice:
// all at once, then in pieces; the parser promises the same frames (and the same refusal)
// however the bytes arrive (stomp_codec.h). A frame it accepts is encoded and parsed again
// and must come back the same.
#include "worker/stomp_codec.h"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using stampede::worker::encodeStompFrame;
using stampede::worker::StompFrame;
using stampede::worker::StompParser;

namespace {

struct Outcome {
  std::vector<StompFrame> frames;
  bool failed = false;
};

Outcome parse(std::string_view wire, size_t piece) {
  StompParser parser(4096);
  Outcome out;
  std::string pending;
  for (size_t at = 0; at < wire.size() && !out.failed; at += piece) {
    pending.append(wire.substr(at, piece));
    for (;;) {
      size_t used = 0;
      StompFrame frame;
      const auto status = parser.feed(pending, used, frame);
      pending.erase(0, used);
      if (status == StompParser::Status::Error) {
        out.failed = true;
        break;
      }
      if (status == StompParser::Status::NeedMore)
        break;
      out.frames.push_back(std::move(frame));
    }
  }
  return out;
}

bool same(const StompFrame& a, const StompFrame& b) {
  return a.command == b.command && a.headers == b.headers && a.body == b.body;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  const size_t piece = 1 + data[0] % 16;
  const std::string_view wire(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Outcome whole = parse(wire, wire.size() + 1);
  const Outcome pieces = parse(wire, piece);
  if (whole.failed != pieces.failed || whole.frames.size() != pieces.frames.size())
    std::abort();
  for (size_t i = 0; i < whole.frames.size(); ++i) {
    if (!same(whole.frames[i], pieces.frames[i]))
      std::abort();
    // Round trip: what we write, we read back the same (bodies with a NUL carry a length).
    const StompFrame& f = whole.frames[i];
    if (f.command == "CONNECT" || f.command == "CONNECTED")
      continue; // not escaped: a header with ':' or a line break cannot round-trip
    std::string again;
    StompFrame copy = f;
    std::erase_if(copy.headers, [](const auto& h) { return h.first == "content-length"; });
    encodeStompFrame(copy, again, false);
    const Outcome back = parse(again, again.size() + 1);
    if (back.failed || back.frames.size() != 1 || back.frames[0].body != f.body ||
        back.frames[0].command != f.command)
      std::abort();
  }
  return 0;
}
