#include "worker/stomp_codec.h"

#include <algorithm>
#include <charconv>

namespace stampede::worker {
namespace {

void appendEscaped(std::string& out, std::string_view text) {
  for (char c : text) {
    switch (c) {
    case '\\':
      out += "\\\\";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case ':':
      out += "\\c";
      break;
    default:
      out += c;
    }
  }
}

// False on an undefined escape (the spec makes it a fatal error).
bool unescape(std::string_view text, std::string& out) {
  out.clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out += text[i];
      continue;
    }
    if (++i == text.size())
      return false;
    switch (text[i]) {
    case '\\':
      out += '\\';
      break;
    case 'n':
      out += '\n';
      break;
    case 'r':
      out += '\r';
      break;
    case 'c':
      out += ':';
      break;
    default:
      return false;
    }
  }
  return true;
}

bool isCommandChar(char c) {
  return c >= 'A' && c <= 'Z';
}

} // namespace

std::optional<std::string_view> StompFrame::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (n == name)
      return std::string_view(v);
  return std::nullopt;
}

std::optional<StompHeartBeat> parseStompHeartBeat(std::string_view value) {
  const size_t comma = value.find(',');
  if (comma == std::string_view::npos)
    return std::nullopt;
  auto number = [](std::string_view text, uint64_t& out) {
    while (!text.empty() && text.front() == ' ')
      text.remove_prefix(1);
    while (!text.empty() && text.back() == ' ')
      text.remove_suffix(1);
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return !text.empty() && ec == std::errc() && end == text.data() + text.size();
  };
  StompHeartBeat hb;
  if (!number(value.substr(0, comma), hb.send_ms) ||
      !number(value.substr(comma + 1), hb.receive_ms))
    return std::nullopt;
  return hb;
}

StompHeartBeat negotiateStompHeartBeat(StompHeartBeat ours, StompHeartBeat broker) {
  StompHeartBeat in_use;
  if (ours.send_ms > 0 && broker.receive_ms > 0)
    in_use.send_ms = std::max(ours.send_ms, broker.receive_ms);
  if (ours.receive_ms > 0 && broker.send_ms > 0)
    in_use.receive_ms = std::max(ours.receive_ms, broker.send_ms);
  return in_use;
}

void encodeStompFrame(const StompFrame& frame, std::string& out, bool text) {
  const bool escape = frame.command != "CONNECT" && frame.command != "CONNECTED";
  out += frame.command;
  out += '\n';
  for (const auto& [name, value] : frame.headers) {
    if (escape) {
      appendEscaped(out, name);
      out += ':';
      appendEscaped(out, value);
    } else {
      out += name;
      out += ':';
      out += value;
    }
    out += '\n';
  }
  if (!text || frame.body.find('\0') != std::string::npos) {
    out += "content-length:";
    out += std::to_string(frame.body.size());
    out += '\n';
  }
  out += '\n';
  out += frame.body;
  out += '\0';
}

StompParser::Status StompParser::fail(std::string why) {
  error_ = std::move(why);
  return Status::Error;
}

bool StompParser::parseHead(StompFrame& out) {
  // head_ holds "COMMAND\nname:value\n...\n" without the blank line; CR before LF allowed.
  out.command.clear();
  out.headers.clear();
  out.body.clear();
  length_.reset();
  std::string_view rest(head_);
  bool first = true;
  std::string name, value;
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    std::string_view line = rest.substr(0, eol);
    rest.remove_prefix(eol + 1);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (first) {
      if (line.empty() || !std::all_of(line.begin(), line.end(), isCommandChar)) {
        error_ = "bad STOMP command line '" + std::string(line.substr(0, 40)) + "'";
        return false;
      }
      out.command.assign(line);
      first = false;
      continue;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      error_ = "bad STOMP header line '" + std::string(line.substr(0, 40)) + "'";
      return false;
    }
    // CONNECTED is not escaped (spec); the others are.
    const bool escaped = out.command != "CONNECTED";
    if (escaped) {
      if (!unescape(line.substr(0, colon), name) || !unescape(line.substr(colon + 1), value)) {
        error_ = "bad escape in STOMP header '" + std::string(line.substr(0, 40)) + "'";
        return false;
      }
    } else {
      name.assign(line.substr(0, colon));
      value.assign(line.substr(colon + 1));
    }
    if (name == "content-length" && !length_) {
      size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || value.empty()) {
        error_ = "bad content-length '" + value.substr(0, 40) + "'";
        return false;
      }
      if (n > body_limit_) {
        error_ = "frame body of " + std::to_string(n) + " bytes is over the limit of " +
                 std::to_string(body_limit_);
        return false;
      }
      length_ = n;
    }
    out.headers.emplace_back(std::move(name), std::move(value));
  }
  if (first) {
    error_ = "empty STOMP frame";
    return false;
  }
  return true;
}

StompParser::Status StompParser::feed(std::string_view data, size_t& used, StompFrame& out) {
  used = 0;
  while (used < data.size()) {
    if (!in_body_) {
      if (head_.empty()) {
        // Heart-beats (EOLs) between frames.
        const char c = data[used];
        if (c == '\n' || c == '\r') {
          ++used;
          continue;
        }
      }
      // Up to the blank line: "\n\n" or "\n\r\n".
      const size_t eol = data.find('\n', used);
      const size_t take = (eol == std::string_view::npos ? data.size() : eol + 1) - used;
      if (head_.size() + take > kMaxHeadBytes)
        return fail("STOMP frame head over " + std::to_string(kMaxHeadBytes) + " bytes");
      head_.append(data.substr(used, take));
      used += take;
      if (head_.back() != '\n')
        return Status::NeedMore;
      // A line is complete: is it the blank one?
      const std::string_view h(head_);
      const bool blank = h.size() >= 2 && (h.ends_with("\n\n") || h.ends_with("\n\r\n"));
      if (h == "\n" || h == "\r\n") {
        head_.clear();
        continue;
      }
      if (!blank)
        continue;
      head_.resize(head_.size() - (h.ends_with("\r\n") ? 2 : 1));
      if (!parseHead(frame_)) {
        head_.clear();
        return Status::Error;
      }
      head_.clear();
      in_body_ = true;
      after_body_ = false;
      body_.clear();
      continue;
    }
    if (length_) {
      if (!after_body_) {
        const size_t take = std::min(*length_ - body_.size(), data.size() - used);
        body_.append(data.substr(used, take));
        used += take;
        if (body_.size() < *length_)
          return Status::NeedMore;
        after_body_ = true;
        if (used == data.size())
          return Status::NeedMore;
      }
      if (data[used] != '\0')
        return fail("STOMP frame body longer than its content-length (no NUL after it)");
      ++used;
    } else {
      const size_t nul = data.find('\0', used);
      const size_t take = (nul == std::string_view::npos ? data.size() : nul) - used;
      if (body_.size() + take > body_limit_)
        return fail("STOMP frame body over the limit of " + std::to_string(body_limit_) + " bytes");
      body_.append(data.substr(used, take));
      used += take;
      if (nul == std::string_view::npos)
        return Status::NeedMore;
      ++used;
    }
    in_body_ = false;
    frame_.body = std::move(body_);
    body_.clear();
    out = std::move(frame_);
    frame_ = StompFrame{};
    return Status::Frame;
  }
  return Status::NeedMore;
}

} // namespace stampede::worker
