#include "worker/http1_parser.h"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace stampede::worker {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

constexpr size_t kMaxSimpleHeadBytes = 4096;
constexpr size_t kMaxHeadBytes = Http1ResponseParser::kMaxHeadBytes;

// Character classes for parseSimpleResponse: a token character (RFC 7230 tchar, as
// basic_parser's table) and a plain one (in a reason phrase or field value: printable ASCII or
// HTAB; basic_parser also takes obs-text, which we leave to it).
constexpr uint8_t kToken = 1;
constexpr uint8_t kPlain = 2;
constexpr std::array<uint8_t, 256> kCharClass = [] {
  std::array<uint8_t, 256> table{};
  for (int c = ' '; c <= '~'; ++c)
    table[c] = kPlain;
  table['\t'] = kPlain;
  for (int c = '0'; c <= '9'; ++c)
    table[c] |= kToken;
  for (int c = 'a'; c <= 'z'; ++c)
    table[c] |= kToken;
  for (int c = 'A'; c <= 'Z'; ++c)
    table[c] |= kToken;
  for (char c : std::string_view("!#$%&'*+-.^_`|~"))
    table[static_cast<unsigned char>(c)] |= kToken;
  return table;
}();

bool is(uint8_t char_class, char c) {
  return (kCharClass[static_cast<unsigned char>(c)] & char_class) != 0;
}

// The first character from `p` on that is not kPlain, or `end`. Reason phrases and field
// values are most of a head: with SSE2, 16 characters a step.
const char* skipPlain(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(' ');
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i del = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    // Signed: 0x80-0xff are below ' ' too, and not plain, as the table says.
    const __m128i control = _mm_andnot_si128(_mm_cmpeq_epi8(v, tab), _mm_cmplt_epi8(v, space));
    const auto mask = unsigned(_mm_movemask_epi8(_mm_or_si128(control, _mm_cmpeq_epi8(v, del))));
    if (mask != 0)
      return p + std::countr_zero(mask);
    p += 16;
  }
#endif
  while (p < end && is(kPlain, *p))
    ++p;
  return p;
}

// Case-insensitive, for token or plain characters against lower-case letters and '-' only
// (OR-ing 0x20 into each character leaves '-' alone), 8 characters a step.
bool equalsLower(std::string_view s, std::string_view lower) {
  if (s.size() != lower.size())
    return false;
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t a;
    uint64_t b;
    std::memcpy(&a, s.data() + i, 8);
    std::memcpy(&b, lower.data() + i, 8);
    if ((a | 0x2020202020202020) != b)
      return false;
  }
  for (; i < s.size(); ++i)
    if ((s[i] | 0x20) != lower[i])
      return false;
  return true;
}

// Case-insensitive for any two strings (header names as the caller wrote them).
bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? char(a[i] | 0x20) : a[i];
    char y = b[i] >= 'A' && b[i] <= 'Z' ? char(b[i] | 0x20) : b[i];
    if (x != y)
      return false;
  }
  return true;
}

// The content codings we decode; anything else stays as it came.
bool isGzip(std::string_view coding) {
  return equalsIgnoreCase(coding, "gzip") || equalsIgnoreCase(coding, "x-gzip");
}

// A response that parseSimpleResponse took whole.
struct SimpleResponse {
  int status = 0;
  bool keep_alive = false;
  bool gzip = false;
  size_t head_bytes = 0; // status line and header fields, up to and with the blank line
  size_t body_bytes = 0; // right after the head
};

// The common response in one pass, several times cheaper than basic_parser: HTTP/1.1, a status
// of 200-599 but 204 and 304, one plain Content-Length, Connection absent or exactly
// keep-alive or close, no Transfer-Encoding, Upgrade or Proxy-Connection, no folded lines,
// printable ASCII only, head and body all in `data` (the head only, for a HEAD). Anything else is
// std::nullopt, and then basic_parser parses the response from its first byte (nothing is
// consumed here): every response this takes, basic_parser would have taken with the same
// results.
std::optional<SimpleResponse> parseSimpleResponse(std::string_view data, bool head_request,
                                                  size_t body_limit) {
  constexpr std::string_view kVersion = "HTTP/1.1 ";
  const char* p = data.data();
  const char* const end = p + std::min(data.size(), kMaxSimpleHeadBytes);
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (end - p < 15 || std::string_view(p, kVersion.size()) != kVersion)
    return std::nullopt;
  p += kVersion.size();
  if (p[0] < '2' || p[0] > '5' || !digit(p[1]) || !digit(p[2]) || p[3] != ' ')
    return std::nullopt;
  SimpleResponse r;
  r.status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
  if (r.status == 204 || r.status == 304)
    return std::nullopt;
  p += 4;
  p = skipPlain(p, end); // the reason phrase
  if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
    return std::nullopt;
  p += 2;
  bool close = false;
  int encodings = 0;
  std::optional<uint64_t> length;
  for (;;) {
    if (end - p < 2)
      return std::nullopt;
    if (p[0] == '\r') {
      if (p[1] != '\n')
        return std::nullopt;
      p += 2;
      break;
    }
    const char* name_begin = p;
    while (p < end && is(kToken, *p))
      ++p;
    if (p == name_begin || p == end || *p != ':')
      return std::nullopt;
    const std::string_view name(name_begin, p - name_begin);
    ++p;
    while (p < end && (*p == ' ' || *p == '\t'))
      ++p;
    const char* value_begin = p;
    p = skipPlain(p, end);
    // CRLF, then not a folded continuation line.
    if (end - p < 3 || p[0] != '\r' || p[1] != '\n' || p[2] == ' ' || p[2] == '\t')
      return std::nullopt;
    const char* value_end = p;
    while (value_end > value_begin && (value_end[-1] == ' ' || value_end[-1] == '\t'))
      --value_end;
    p += 2;
    const std::string_view value(value_begin, value_end - value_begin);
    // The fields basic_parser (or we) act on, told apart by length first: most fields are none.
    switch (name.size()) {
    case 14:
      if (equalsLower(name, "content-length")) {
        if (length || value.empty() || value.size() > 18)
          return std::nullopt;
        uint64_t n = 0;
        for (char c : value) {
          if (!digit(c))
            return std::nullopt;
          n = n * 10 + uint64_t(c - '0');
        }
        length = n;
      }
      break;
    case 10:
      if (equalsLower(name, "connection")) {
        if (equalsLower(value, "close"))
          close = true;
        else if (!equalsLower(value, "keep-alive"))
          return std::nullopt;
      }
      break;
    case 16:
      if (equalsLower(name, "content-encoding")) {
        ++encodings;
        r.gzip = isGzip(value);
        break;
      }
      [[fallthrough]];
    case 7:
    case 17:
      if (equalsLower(name, "upgrade") || equalsLower(name, "proxy-connection") ||
          equalsLower(name, "transfer-encoding"))
        return std::nullopt;
      break;
    }
  }
  r.head_bytes = size_t(p - data.data());
  if (!length || *length > body_limit)
    return std::nullopt;
  if (!head_request) {
    if (data.size() - r.head_bytes < *length)
      return std::nullopt;
    r.body_bytes = size_t(*length);
  }
  r.gzip = r.gzip && encodings == 1; // a stack of codings is not ours to undo
  r.keep_alive = !close;
  return r;
}

// Collects the header fields of a raw header block (cold path).
class HeaderCollector final : public http::basic_parser<false> {
public:
  explicit HeaderCollector(common::HeaderList& out) : out_(out) { skip(true); }

private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int, beast::string_view, int, error_code&) override {}
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    out_.emplace_back(std::string(name), std::string(value));
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>&, error_code&) override {}
  size_t on_body_impl(beast::string_view data, error_code&) override { return data.size(); }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) override {
    return data.size();
  }
  void on_finish_impl(error_code&) override {}

  common::HeaderList& out_;
};

} // namespace

std::optional<std::string_view> findHeader(std::string_view head, std::string_view name) {
  if (name.empty())
    return std::nullopt;
  size_t pos = head.find('\n'); // past the status line
  while (pos != std::string_view::npos) {
    ++pos;
    size_t eol = head.find('\n', pos);
    std::string_view line =
        head.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    if (line.size() > name.size() && line[name.size()] == ':' &&
        equalsIgnoreCase(line.substr(0, name.size()), name)) {
      std::string_view value = line.substr(name.size() + 1);
      auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
      while (!value.empty() && blank(value.front()))
        value.remove_prefix(1);
      while (!value.empty() && blank(value.back()))
        value.remove_suffix(1);
      return value;
    }
    pos = eol;
  }
  return std::nullopt;
}

// basic_parser for one response at a time, into buffers kept across responses.
struct Http1ResponseParser::Slow {
  class Parser final : public http::basic_parser<false> {
  public:
    Parser(Slow& slow, size_t limit, bool keep_body)
        : slow_(slow), limit_(limit), keep_body_(keep_body) {
      // Not boost::none for "no limit": Boost 1.74 compares a Content-Length with it as
      // greater, and refuses every body.
      body_limit(keep_body ? limit : std::numeric_limits<std::uint64_t>::max());
      header_limit(std::uint32_t(kMaxHeadBytes));
      eager(true); // as http::async_read: parse the body in the same put() as the header
    }
    int status() const { return status_; }

  private:
    void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                         error_code&) override {}
    void on_response_impl(int code, beast::string_view, int, error_code&) override {
      status_ = code;
    }
    void on_field_impl(http::field field, beast::string_view name, beast::string_view value,
                       error_code&) override {
      if (is_header_done()) {
        slow_.trailers.emplace_back(std::string(name), std::string(value));
      } else if (field == http::field::content_encoding) {
        ++slow_.encodings;
        slow_.gzip = isGzip(std::string_view(value.data(), value.size()));
      }
    }
    void on_header_impl(error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code& ec) override {
      if (!keep_body_ || !length)
        return;
      // basic_parser (Boost 1.74) finds a Content-Length over body_limit but, parsing eagerly,
      // goes on into the body with the error set: check again before reserving.
      if (*length > limit_)
        ec = http::error::body_limit;
      else
        slow_.body.reserve(size_t(*length));
    }
    size_t on_body_impl(beast::string_view data, error_code&) override {
      keep(data);
      return data.size();
    }
    void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
    size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) override {
      keep(data);
      return data.size();
    }
    void on_finish_impl(error_code&) override {}
    // basic_parser holds a kept body to the limit; of another, the first bytes only.
    void keep(beast::string_view data) {
      std::string& body = slow_.body;
      size_t n = data.size();
      if (!keep_body_)
        n = std::min(n, body.size() < kBodyPrefixBytes ? kBodyPrefixBytes - body.size() : 0);
      body.append(data.data(), n);
    }

    Slow& slow_;
    size_t limit_;
    bool keep_body_;
    int status_ = 0;
  };

  // Emplaced fresh for every response: construction is cheap and allocation-free.
  void begin(bool head_request, size_t body_limit, bool keep_body) {
    body.clear();
    head.clear();
    trailers.clear();
    encodings = 0;
    gzip = false;
    parser.emplace(*this, body_limit, keep_body);
    if (head_request)
      parser->skip(true);
  }

  size_t put(std::string_view data, error_code& ec) {
    const bool in_header = !parser->is_header_done();
    size_t used = parser->put(boost::asio::buffer(data.data(), data.size()), ec);
    if (in_header) {
      // basic_parser may take the status line and the fields in separate calls; the last one
      // may run on into the body: cut at the blank line, the first one by definition.
      const size_t search_from = head.size() >= 3 ? head.size() - 3 : 0;
      // At most one byte over the limit: enough to tell a head that is over it.
      const size_t room = kMaxHeadBytes + 1 - std::min(head.size(), kMaxHeadBytes + 1);
      head.append(data.data(), std::min(used, room));
      if (parser->is_header_done()) {
        size_t end = head.find("\r\n\r\n", search_from);
        if (end != std::string::npos)
          head.resize(end + 4);
      }
      // basic_parser's header_limit holds for each put(), not for the whole head (it takes the
      // fields as they come): the whole is ours to limit.
      if (head.size() > kMaxHeadBytes)
        ec = http::error::header_limit;
    }
    return used;
  }

  std::optional<Parser> parser;
  std::string body;
  std::string head;
  common::HeaderList trailers;
  int encodings = 0;
  bool gzip = false;
};

Http1ResponseParser::Http1ResponseParser(size_t body_limit) : body_limit_(body_limit) {}

Http1ResponseParser::~Http1ResponseParser() = default;

Http1ResponseParser::Slow& Http1ResponseParser::slow() {
  if (!slow_)
    slow_ = std::make_unique<Slow>();
  return *slow_;
}

void Http1ResponseParser::start(bool head_request, bool keep_body) {
  head_request_ = head_request;
  keep_body_ = keep_body;
  done_ = false;
  consumed_any_ = false;
  seen_ = false;
  slow_active_ = false;
  keep_alive_ = false;
  gzip_ = false;
  status_ = 0;
  head_ = {};
  body_ = {};
}

bool Http1ResponseParser::gotSome() const {
  return seen_ || done_;
}

const common::HeaderList& Http1ResponseParser::trailers() const {
  static const common::HeaderList kNone;
  return slow_active_ ? slow_->trailers : kNone;
}

size_t Http1ResponseParser::feed(std::string_view data, error_code& ec) {
  ec = {};
  size_t used_total = 0;
  for (;;) {
    const std::string_view rest = data.substr(used_total);
    if (rest.empty())
      return used_total;
    seen_ = true;
    // Until basic_parser has consumed a byte, all of the response is in `rest`: the fast path
    // may still take it whole (it may have been waiting for the rest of a split head).
    if (!consumed_any_) {
      if (auto r = parseSimpleResponse(rest, head_request_, keep_body_ ? body_limit_ : SIZE_MAX)) {
        slow_active_ = false;
        status_ = r->status;
        keep_alive_ = r->keep_alive;
        gzip_ = r->gzip;
        head_ = rest.substr(0, r->head_bytes);
        body_ = rest.substr(r->head_bytes,
                            keep_body_ ? r->body_bytes : std::min(r->body_bytes, kBodyPrefixBytes));
        done_ = true;
        return used_total + r->head_bytes + r->body_bytes;
      }
    }
    Slow& s = slow();
    if (!slow_active_) {
      s.begin(head_request_, body_limit_, keep_body_);
      slow_active_ = true;
    }
    const size_t used = s.put(rest, ec);
    used_total += used;
    if (used != 0)
      consumed_any_ = true;
    if (!head_.data() && s.parser->is_header_done())
      head_ = s.head;
    if (ec == http::error::need_more) {
      ec = {};
      return used_total;
    }
    if (ec || !s.parser->is_done())
      return used_total;
    status_ = s.parser->status();
    if (status_ / 100 == 1 && status_ != 101) {
      // An interim response (100 Continue, 103 Early Hints): the final one follows.
      consumed_any_ = false;
      slow_active_ = false;
      head_ = {};
      continue;
    }
    finishSlow();
    return used_total;
  }
}

void Http1ResponseParser::finishSlow() {
  Slow& s = *slow_;
  keep_alive_ = s.parser->keep_alive() && status_ != 101; // we do not speak what 101 upgrades to
  gzip_ = s.gzip && s.encodings == 1;
  head_ = s.head;
  body_ = s.body;
  done_ = true;
}

void Http1ResponseParser::feedEof(error_code& ec) {
  ec = {};
  if (done_)
    return;
  if (!slow_active_ || !slow_->parser->got_some()) {
    // A head the fast path was still waiting for is a partial response; nothing is a closed
    // connection.
    ec = seen_ ? error_code(http::error::partial_message) : error_code(http::error::end_of_stream);
    return;
  }
  slow_->parser->put_eof(ec); // a body that ends with the connection
  if (!ec && slow_->parser->is_done()) {
    status_ = slow_->parser->status();
    finishSlow();
  }
}

std::optional<std::string_view> Http1ResponseParser::header(std::string_view name) const {
  if (auto value = findHeader(head_, name))
    return value;
  for (const auto& [field, value] : trailers())
    if (equalsIgnoreCase(field, name))
      return std::string_view(value);
  return std::nullopt;
}

common::HeaderList Http1ResponseParser::fields() const {
  common::HeaderList out;
  HeaderCollector collector(out);
  error_code ignored;
  collector.put(boost::asio::buffer(head_.data(), head_.size()), ignored);
  const auto& extra = trailers();
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

} // namespace stampede::worker
