#include "master/hosts_file.h"

#include "common/files.h"

#include "common/config_error.h"

#include <arpa/inet.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <string_view>

namespace stampede::master {

namespace {

using common::ConfigError;

constexpr size_t kKeyLength = 40;
constexpr std::string_view kZ85Alphabet =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

struct Token {
  std::string_view text;
  int column = 0; // 1-based
};

bool isBlank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

// A `#` opens a comment only where a token would start: Z85 keys may contain `#`.
std::vector<Token> tokenize(std::string_view line) {
  std::vector<Token> tokens;
  size_t i = 0;
  while (i < line.size()) {
    if (isBlank(line[i])) {
      ++i;
      continue;
    }
    if (line[i] == '#')
      break;
    const size_t start = i;
    while (i < line.size() && !isBlank(line[i]))
      ++i;
    tokens.push_back({line.substr(start, i - start), int(start) + 1});
  }
  return tokens;
}

std::string quoted(std::string_view text) {
  return '"' + std::string(text) + '"';
}

class LineParser {
public:
  LineParser(const std::string& file, int line) : file_(file), line_(line) {}

  [[noreturn]] void fail(int column, const std::string& message) const {
    throw ConfigError(file_, line_, column, "", message);
  }

  // host[:port] or [v6]:port; out.host gets no brackets. `identity` is what two lines naming
  // the same worker share: case-folded names, IPv6 in binary so that spellings agree.
  void parseAddress(const Token& token, WorkerAddress& out, std::string& identity) const {
    std::string_view text = token.text;
    std::string_view port_text;
    bool has_port = false;
    if (text.front() == '[') {
      const size_t close = text.find(']');
      if (close == std::string_view::npos)
        fail(token.column, "missing ']' after IPv6 address " + quoted(text));
      const std::string_view rest = text.substr(close + 1);
      if (!rest.empty()) {
        if (rest.front() != ':')
          fail(token.column, "expected \":port\" after ']' in " + quoted(text));
        has_port = true;
        port_text = rest.substr(1);
      }
      out.host = std::string(text.substr(1, close - 1));
      if (out.host.empty())
        fail(token.column, "empty host in " + quoted(text));
      identity = ipv6Identity(token, out.host);
    } else {
      if (text.find('=') != std::string_view::npos)
        fail(token.column, "expected host[:port] before the options, got " + quoted(text));
      const size_t colon = text.find(':');
      if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos)
        fail(token.column, "an IPv6 address needs brackets, e.g. [" + std::string(text) + "]:7700");
      if (colon != std::string_view::npos) {
        has_port = true;
        port_text = text.substr(colon + 1);
        text = text.substr(0, colon);
      }
      if (text.empty())
        fail(token.column, "empty host in " + quoted(token.text));
      for (const char c : text)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_')
          fail(token.column, "host " + quoted(text) + " contains " + describeChar(c) +
                                 " (letters, digits, '.', '-', '_' only)");
      out.host = std::string(text);
      identity = out.host;
      for (char& c : identity)
        c = char(std::tolower(static_cast<unsigned char>(c)));
    }
    if (has_port)
      out.port = parsePort(token, port_text);
  }

  void parseOption(const Token& token, WorkerAddress& out, bool& seen_weight,
                   bool& seen_key) const {
    const size_t eq = token.text.find('=');
    if (eq == std::string_view::npos)
      fail(token.column, "unexpected " + quoted(token.text) +
                             " (after the address: weight=N or key=<Z85 public key>)");
    const std::string_view name = token.text.substr(0, eq);
    const std::string_view value = token.text.substr(eq + 1);
    if (name == "weight") {
      if (seen_weight)
        fail(token.column, "weight given twice on one line");
      seen_weight = true;
      out.weight = parseWeight(token, value);
    } else if (name == "key") {
      if (seen_key)
        fail(token.column, "key given twice on one line");
      seen_key = true;
      checkKey(token, value);
      out.key = std::string(value);
    } else {
      fail(token.column, "unknown option " + quoted(name) + " (expected weight= or key=)");
    }
  }

private:
  static std::string describeChar(char c) {
    if (std::isprint(static_cast<unsigned char>(c)))
      return std::string("'") + c + "'";
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%02x", unsigned(static_cast<unsigned char>(c)));
    return buf;
  }

  std::string ipv6Identity(const Token& token, const std::string& host) const {
    // A zone ("fe80::1%eth0") is not part of what inet_pton reads.
    const size_t percent = host.find('%');
    const std::string address = host.substr(0, percent);
    std::string zone = percent == std::string::npos ? "" : host.substr(percent + 1);
    in6_addr binary{};
    if (inet_pton(AF_INET6, address.c_str(), &binary) != 1)
      fail(token.column, quoted(host) + " is not an IPv6 address");
    if (percent != std::string::npos) {
      bool zone_ok = !zone.empty();
      for (const char c : zone)
        zone_ok = zone_ok &&
                  (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_');
      if (!zone_ok)
        fail(token.column, "bad IPv6 zone " + quoted(zone) + " in " + quoted(host));
    }
    return std::string(reinterpret_cast<const char*>(&binary), sizeof binary) + '%' + zone;
  }

  uint16_t parsePort(const Token& token, std::string_view text) const {
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 ||
        value > 65535)
      fail(token.column, "port must be a number from 1 to 65535, got " + quoted(text));
    return uint16_t(value);
  }

  double parseWeight(const Token& token, std::string_view text) const {
    double value = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    // from_chars reads "inf" and "nan" too; neither is a share of anything.
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() ||
        !std::isfinite(value) || !(value > 0))
      fail(token.column, "weight must be a number > 0, got " + quoted(text));
    return value;
  }

  void checkKey(const Token& token, std::string_view text) const {
    if (text.size() != kKeyLength)
      fail(token.column, "key must be " + std::to_string(kKeyLength) +
                             " Z85 characters (a CURVE public key), got " +
                             std::to_string(text.size()));
    for (const char c : text)
      if (kZ85Alphabet.find(c) == std::string_view::npos)
        fail(token.column, "key contains " + describeChar(c) + ", not a Z85 character");
  }

  const std::string& file_;
  int line_;
};

} // namespace

std::string WorkerAddress::endpoint() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return "tcp://" + (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::vector<WorkerAddress> parseHostsText(const std::string& text, const std::string& file_name) {
  std::vector<WorkerAddress> workers;
  std::map<std::string, int> first_line; // identity:port -> line that listed it
  size_t start = 0;
  int line_number = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    ++line_number;
    const std::vector<Token> tokens = tokenize(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (tokens.empty())
      continue;

    const LineParser parser(file_name, line_number);
    WorkerAddress worker;
    worker.line = line_number;
    std::string identity;
    parser.parseAddress(tokens.front(), worker, identity);
    bool seen_weight = false;
    bool seen_key = false;
    for (size_t i = 1; i < tokens.size(); ++i)
      parser.parseOption(tokens[i], worker, seen_weight, seen_key);

    identity += ':' + std::to_string(worker.port);
    const auto [it, inserted] = first_line.emplace(identity, line_number);
    if (!inserted) {
      const std::string shown =
          worker.host.find(':') != std::string::npos ? "[" + worker.host + "]" : worker.host;
      parser.fail(tokens.front().column, "worker " + shown + ":" + std::to_string(worker.port) +
                                             " is listed twice (first on line " +
                                             std::to_string(it->second) + ")");
    }
    workers.push_back(std::move(worker));
  }
  if (workers.empty())
    throw ConfigError(file_name, 0, 0, "", "no workers listed (one host[:port] per line)");
  return workers;
}

std::vector<WorkerAddress> parseHostsFile(const std::string& path) {
  std::string problem;
  const auto text = common::readWholeFile(path, common::kMaxListFileBytes, "a hosts file", problem);
  if (!text)
    throw ConfigError(path, 0, 0, "", "cannot read hosts file: " + problem);
  return parseHostsText(*text, path);
}

} // namespace stampede::master
