// Http1ResponseParser: the one-pass path and basic_parser must agree on every response, however
// the bytes arrive.
#include "worker/http1_parser.h"

#include <boost/beast/http/error.hpp>
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>
#include <vector>

namespace stampede::worker {
namespace {

namespace http = boost::beast::http;
using boost::system::error_code;

struct Options {
  bool head_request = false;
  bool eof = false; // the connection closes after the last byte
  size_t body_limit = Http1ResponseParser::kDefaultBodyLimit;
  bool keep_body = true;
};

// What the parser made of a response, copied out of it.
struct Parsed {
  error_code ec;
  bool done = false;
  int status = 0;
  bool keep_alive = false;
  bool gzip = false;
  bool in_place = false; // the body is a view of the bytes fed, not a copy
  size_t consumed = 0;   // of the input, by this response
  std::string head;
  std::string body;
  common::HeaderList trailers;

  bool operator==(const Parsed& o) const {
    return ec == o.ec && done == o.done && status == o.status && keep_alive == o.keep_alive &&
           gzip == o.gzip && consumed == o.consumed && head == o.head && body == o.body &&
           trailers == o.trailers;
  }
};

std::ostream& operator<<(std::ostream& os, const Parsed& p) {
  return os << "{ec=" << p.ec.message() << " done=" << p.done << " status=" << p.status
            << " keep_alive=" << p.keep_alive << " gzip=" << p.gzip << " consumed=" << p.consumed
            << " head=" << p.head.size() << "B body=" << p.body.size()
            << "B trailers=" << p.trailers.size() << "}";
}

Parsed capture(const Http1ResponseParser& parser, std::string_view fed) {
  Parsed p;
  p.done = parser.done();
  p.status = parser.status();
  p.keep_alive = parser.keepAlive();
  p.gzip = parser.gzip();
  p.head = parser.head();
  p.body = parser.body();
  p.trailers = parser.trailers();
  p.in_place = !parser.body().empty() && parser.body().data() >= fed.data() &&
               parser.body().data() < fed.data() + fed.size();
  return p;
}

// Feeds `wire` to `parser` as a session does, the connection delivering it in pieces that end
// at `cuts` (ascending offsets): what a feed leaves unconsumed is fed again with the next piece.
Parsed parseWith(Http1ResponseParser& parser, std::string_view wire, std::vector<size_t> cuts,
                 const Options& options = {}) {
  parser.start(options.head_request, options.keep_body);
  cuts.push_back(wire.size());
  std::string pending;
  size_t offset = 0;
  size_t consumed = 0;
  for (size_t cut : cuts) {
    pending.append(wire.substr(offset, cut - offset));
    offset = cut;
    error_code ec;
    const size_t used = parser.feed(pending, ec);
    consumed += used;
    if (ec || parser.done()) {
      Parsed p = capture(parser, pending); // views of `pending`: copy them before it changes
      p.ec = ec;
      p.consumed = consumed;
      return p;
    }
    pending.erase(0, used);
  }
  error_code ec;
  if (options.eof)
    parser.feedEof(ec);
  Parsed p = capture(parser, pending);
  p.ec = ec;
  p.consumed = consumed;
  return p;
}

Parsed parse(std::string_view wire, std::vector<size_t> cuts = {}, const Options& options = {}) {
  Http1ResponseParser parser(options.body_limit);
  return parseWith(parser, wire, std::move(cuts), options);
}

std::vector<size_t> everyByte(std::string_view wire) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < wire.size(); ++i)
    cuts.push_back(i);
  return cuts;
}

// An error for a response that is not HTTP/1.1 as it should be, not a closed connection.
bool isMalformed(const error_code& ec) {
  return ec && ec.category() == error_code(http::error::bad_version).category() &&
         ec != http::error::need_more && ec != http::error::end_of_stream &&
         ec != http::error::partial_message;
}

const std::string kSimple = "HTTP/1.1 200 OK\r\n"
                            "Content-Type: text/plain\r\n"
                            "Content-Length: 15\r\n"
                            "\r\n"
                            "hello, stampede";

const std::string kChunked = "HTTP/1.1 200 OK\r\n"
                             "Transfer-Encoding: chunked\r\n"
                             "Trailer: X-Checksum\r\n"
                             "\r\n"
                             "5;name=value\r\n"
                             "hello\r\n"
                             "7;flag;other=\"quoted\"\r\n"
                             ", world\r\n"
                             "0\r\n"
                             "X-Checksum: abc123\r\n"
                             "\r\n";

TEST_CASE("a Content-Length response in one piece is parsed in place", "[http1_parser]") {
  auto p = parse(kSimple);
  CHECK_FALSE(p.ec);
  CHECK(p.done);
  CHECK(p.status == 200);
  CHECK(p.keep_alive);
  CHECK_FALSE(p.gzip);
  CHECK(p.body == "hello, stampede");
  CHECK(p.head == kSimple.substr(0, kSimple.find("\r\n\r\n") + 4));
  CHECK(p.consumed == kSimple.size());
  CHECK(p.in_place);
  CHECK(p.trailers.empty());
}

TEST_CASE("status line, reason phrase and header fields", "[http1_parser]") {
  const std::string wire = "HTTP/1.1 404 Not Found Here\r\n"
                           "Server: test\r\n"
                           "X-Dup: first\r\n"
                           "x-dup: second\r\n"
                           "X-Spaces: \t padded value \t\r\n"
                           "X-Empty:\r\n"
                           "Content-Length: 3\r\n"
                           "\r\n"
                           "abc";
  // Fed whole: the parser's views are of `wire`, which outlives them here.
  Http1ResponseParser parser;
  parser.start(false);
  error_code ec;
  CHECK(parser.feed(wire, ec) == wire.size());
  REQUIRE(parser.done());
  CHECK(parser.status() == 404);
  CHECK(parser.body() == "abc");
  CHECK(parser.header("server") == std::optional<std::string_view>("test"));
  CHECK(parser.header("X-DUP") == std::optional<std::string_view>("first"));
  CHECK(parser.header("x-spaces") == std::optional<std::string_view>("padded value"));
  CHECK(parser.header("x-empty") == std::optional<std::string_view>(""));
  CHECK_FALSE(parser.header("X-Missing"));
  CHECK_FALSE(parser.header("X-Du")); // a prefix of a name is not the name
  CHECK_FALSE(parser.header("HTTP/1.1 404 Not Found Here"));
  auto fields = parser.fields();
  REQUIRE(fields.size() == 6);
  CHECK(fields[2] == std::pair<std::string, std::string>("x-dup", "second"));
  // The same through basic_parser (the body split over two reads).
  Http1ResponseParser slow;
  CHECK_FALSE(parseWith(slow, wire, {wire.size() - 1}).in_place);
  CHECK(slow.done());
  CHECK(slow.header("X-DUP") == std::optional<std::string_view>("first"));
  CHECK(slow.fields() == fields);
}

TEST_CASE("findHeader reads LF-only blocks and skips the status line", "[http1_parser]") {
  const std::string block = "HTTP/2 200\nx-one: 1\ncontent-type: text/html\n\n";
  CHECK(findHeader(block, "Content-Type") == std::optional<std::string_view>("text/html"));
  CHECK(findHeader(block, "X-One") == std::optional<std::string_view>("1"));
  CHECK_FALSE(findHeader(block, "HTTP/2 200"));
  CHECK_FALSE(findHeader(block, ""));
  CHECK_FALSE(findHeader("", "x-one"));
}

TEST_CASE("a chunked body with extensions and trailers", "[http1_parser]") {
  Http1ResponseParser parser;
  auto p = parseWith(parser, kChunked, {});
  CHECK_FALSE(p.ec);
  REQUIRE(p.done);
  CHECK(p.status == 200);
  CHECK(p.keep_alive);
  CHECK(p.body == "hello, world");
  CHECK(p.consumed == kChunked.size());
  REQUIRE(p.trailers.size() == 1);
  CHECK(p.trailers[0] == std::pair<std::string, std::string>("X-Checksum", "abc123"));
  CHECK(p.head.find("X-Checksum: abc123") == std::string::npos); // trailers are not the head
  CHECK(parser.header("x-checksum") == std::optional<std::string_view>("abc123"));
  CHECK(parser.header("transfer-encoding") == std::optional<std::string_view>("chunked"));
  CHECK(parser.fields().back() == std::pair<std::string, std::string>("X-Checksum", "abc123"));
}

TEST_CASE("Connection: close and HTTP/1.0 end the connection after the response",
          "[http1_parser]") {
  auto fast = parse("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
  CHECK(fast.done);
  CHECK(fast.in_place);
  CHECK_FALSE(fast.keep_alive);
  auto chunked = parse("HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n"
                       "\r\n2\r\nok\r\n0\r\n\r\n");
  CHECK(chunked.done);
  CHECK(chunked.body == "ok");
  CHECK_FALSE(chunked.keep_alive);
  auto old = parse("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
  CHECK(old.done);
  CHECK(old.body == "ok");
  CHECK_FALSE(old.keep_alive);
  auto old_kept = parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok");
  CHECK(old_kept.keep_alive);
}

TEST_CASE("a body without length ends with the connection", "[http1_parser]") {
  const std::string wire = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end";
  auto open = parse(wire);
  CHECK_FALSE(open.ec);
  CHECK_FALSE(open.done); // more may come until the close
  auto closed = parse(wire, {}, {.eof = true});
  CHECK_FALSE(closed.ec);
  REQUIRE(closed.done);
  CHECK(closed.body == "to the end");
  CHECK_FALSE(closed.keep_alive);
}

TEST_CASE("a closed connection before the response is complete", "[http1_parser]") {
  CHECK(parse("", {}, {.eof = true}).ec == http::error::end_of_stream);
  CHECK(parse("HTTP/1.1 200 OK\r\nContent-Le", {}, {.eof = true}).ec ==
        http::error::partial_message);
  CHECK(parse("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", {}, {.eof = true}).ec ==
        http::error::partial_message);
  CHECK(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", {}, {.eof = true})
            .ec == http::error::partial_message);
}

TEST_CASE("a HEAD response has no body whatever its Content-Length", "[http1_parser]") {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
  const std::string next = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  auto p = parse(head + next, {}, {.head_request = true});
  CHECK_FALSE(p.ec);
  REQUIRE(p.done);
  CHECK(p.status == 200);
  CHECK(p.body.empty());
  CHECK(p.keep_alive);
  CHECK(p.consumed == head.size()); // the next response is not this one's body
  // Chunked, and split: through basic_parser.
  const std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  auto q = parse(chunked + next, {5}, {.head_request = true});
  REQUIRE(q.done);
  CHECK(q.body.empty());
  CHECK(q.consumed == chunked.size());
}

TEST_CASE("204 and 304 responses have no body", "[http1_parser]") {
  const std::string next = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  for (std::string head : {"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n",
                           "HTTP/1.1 304 Not Modified\r\nContent-Length: 999\r\n\r\n"}) {
    auto p = parse(head + next);
    CHECK_FALSE(p.ec);
    REQUIRE(p.done);
    CHECK((p.status == 204 || p.status == 304));
    CHECK(p.body.empty());
    CHECK(p.keep_alive);
    CHECK(p.consumed == head.size());
  }
}

TEST_CASE("interim 1xx responses are passed over", "[http1_parser]") {
  const std::string wire = "HTTP/1.1 100 Continue\r\n\r\n"
                           "HTTP/1.1 103 Early Hints\r\nLink: </style.css>\r\n\r\n" +
                           kSimple;
  auto p = parse(wire);
  CHECK_FALSE(p.ec);
  REQUIRE(p.done);
  CHECK(p.status == 200);
  CHECK(p.body == "hello, stampede");
  CHECK(p.head == kSimple.substr(0, kSimple.find("\r\n\r\n") + 4));
  CHECK(p.consumed == wire.size());
}

TEST_CASE("pipelined responses are taken one at a time", "[http1_parser]") {
  const std::string wire = kSimple + kChunked + kSimple;
  Http1ResponseParser parser;
  std::string_view rest = wire;
  for (std::string_view body : {"hello, stampede", "hello, world", "hello, stampede"}) {
    parser.start(false);
    error_code ec;
    size_t used = parser.feed(rest, ec);
    REQUIRE_FALSE(ec);
    REQUIRE(parser.done());
    CHECK(parser.body() == body);
    rest.remove_prefix(used);
  }
  CHECK(rest.empty());
}

TEST_CASE("every split of a response parses as the whole", "[http1_parser]") {
  struct Case {
    const char* name;
    std::string wire;
    Options options;
  };
  const std::vector<Case> cases = {
      {"content-length", kSimple, {}},
      {"chunked with extensions and trailers", kChunked, {}},
      {"close-delimited",
       "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
       {.eof = true}},
      {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", {.head_request = true}},
      {"204", "HTTP/1.1 204 No Content\r\n\r\n", {}},
      {"304", "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", {}},
      {"100 then 200", "HTTP/1.1 100 Continue\r\n\r\n" + kSimple, {}},
      {"connection close",
       "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbad",
       {}},
      {"gzip",
       "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\n\x1f\x8b..",
       {}},
      {"malformed chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", {}},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      const Parsed whole = parse(c.wire, {}, c.options);
      INFO(whole);
      for (size_t cut = 0; cut <= c.wire.size(); ++cut) {
        INFO("split at " << cut);
        CHECK(parse(c.wire, {cut}, c.options) == whole);
      }
      CHECK(parse(c.wire, everyByte(c.wire), c.options) == whole);
      // One parser for every split: nothing of one response leaks into the next.
      Http1ResponseParser reused;
      for (size_t cut = 0; cut <= c.wire.size(); ++cut)
        CHECK(parseWith(reused, c.wire, {cut}, c.options) == whole);
    }
  }
}

TEST_CASE("every byte anywhere in a reason phrase or field value parses as basic_parser has it",
          "[http1_parser]") {
  // The one-pass path scans reason phrases and values 16 bytes a step (SSE2) and the rest one
  // at a time: a byte it wrongly took as plain, or wrongly refused, at any offset in or past a
  // step, would make the whole response parse otherwise than fed a byte at a time (which
  // leaves it to basic_parser).
  const std::string value(40, 'v');
  for (int b = 0; b < 256; ++b) {
    for (size_t at = 0; at < value.size(); ++at) {
      std::string odd = value;
      odd[at] = char(b);
      for (const bool in_reason : {false, true}) {
        const std::string wire =
            in_reason ? "HTTP/1.1 200 " + odd + "\r\nContent-Length: 2\r\n\r\nok"
                      : "HTTP/1.1 200 OK\r\nX-Odd: " + odd + "\r\nContent-Length: 2\r\n\r\nok";
        INFO("byte " << b << " at " << at << (in_reason ? " of the reason" : " of the value"));
        CHECK(parse(wire, {}, {}) == parse(wire, everyByte(wire), {}));
      }
    }
  }
}

TEST_CASE("malformed responses are protocol errors", "[http1_parser]") {
  const std::vector<std::string> bad = {
      "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",                        // status not a number
      "HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n",                         // two digits
      "HTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",                         // not HTTP
      "HTTP/1.1200 OK\r\nContent-Length: 0\r\n\r\n",                         // no space
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",                       // negative
      "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",  // overflows
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", // two lengths
      "HTTP/1.1 200 OK\r\nContent-Length: 12abc\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n", // no CRLF
      "HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
  };
  for (const auto& wire : bad) {
    INFO(wire);
    auto whole = parse(wire);
    CHECK(isMalformed(whole.ec));
    CHECK_FALSE(whole.done);
    CHECK(parse(wire, everyByte(wire)).ec == whole.ec);
  }
}

TEST_CASE("bodies far larger than a read arrive whole, and a body limit holds", "[http1_parser]") {
  constexpr size_t kRead = 64 * 1024;
  const std::string body(5 * 1024 * 1024 + 7, 'b');
  const std::string wire =
      "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  std::vector<size_t> reads;
  for (size_t at = kRead; at < wire.size(); at += kRead)
    reads.push_back(at);
  auto p = parse(wire, reads);
  REQUIRE(p.done);
  CHECK(p.body == body);
  CHECK(p.consumed == wire.size());

  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  std::string expected;
  for (int i = 0; i < 1000; ++i) {
    std::string chunk(1000 + i, char('a' + i % 26));
    char size[16];
    snprintf(size, sizeof size, "%zx", chunk.size());
    chunked += std::string(size) + "\r\n" + chunk + "\r\n";
    expected += chunk;
  }
  chunked += "0\r\n\r\n";
  reads.clear();
  for (size_t at = kRead; at < chunked.size(); at += kRead)
    reads.push_back(at);
  auto c = parse(chunked, reads);
  REQUIRE(c.done);
  CHECK(c.body == expected);

  // Over the limit: refused, whether the length is declared or the chunks add up to it.
  CHECK(parse(wire, reads, {.body_limit = 1024 * 1024}).ec == http::error::body_limit);
  CHECK(parse(chunked, reads, {.body_limit = 100000}).ec == http::error::body_limit);
  CHECK(parse(kSimple, {}, {.body_limit = 15}).done); // at the limit is fine
}

TEST_CASE("Content-Encoding gzip is reported, other codings are not", "[http1_parser]") {
  auto with = [](std::string fields) {
    return "HTTP/1.1 200 OK\r\n" + fields + "Content-Length: 2\r\n\r\nxx";
  };
  for (size_t cut : {size_t{0}, size_t{20}}) { // in place, and through basic_parser
    CHECK(parse(with("Content-Encoding: gzip\r\n"), {cut}).gzip);
    CHECK(parse(with("content-encoding: GZIP\r\n"), {cut}).gzip);
    CHECK(parse(with("Content-Encoding: x-gzip\r\n"), {cut}).gzip);
    CHECK_FALSE(parse(with("Content-Encoding: br\r\n"), {cut}).gzip);
    CHECK_FALSE(parse(with("Content-Encoding: identity\r\n"), {cut}).gzip);
    CHECK_FALSE(parse(with(""), {cut}).gzip);
    // A stack of codings is not undone halfway.
    CHECK_FALSE(parse(with("Content-Encoding: gzip\r\nContent-Encoding: br\r\n"), {cut}).gzip);
  }
}

// Bytes that differ along the way, so that a wrong slice of them shows.
std::string sampleBody(size_t size) {
  std::string body(size, ' ');
  for (size_t i = 0; i < size; ++i)
    body[i] = char('a' + (i + i / 26) % 26);
  return body;
}

// Reads of `read` bytes each, as cuts for parse().
std::vector<size_t> readsOf(std::string_view wire, size_t read) {
  std::vector<size_t> cuts;
  for (size_t at = read; at < wire.size(); at += read)
    cuts.push_back(at);
  return cuts;
}

TEST_CASE("a declared length over the limit fails at once, without allocating it",
          "[http1_parser]") {
  const std::string wire = "HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nabc";
  // Boost 1.74's basic_parser goes on into the body after finding the length over its limit:
  // this was std::bad_alloc from reserving 10^12 bytes.
  CHECK(parse(wire).ec == http::error::body_limit);
  CHECK(parse(wire, everyByte(wire)).ec == http::error::body_limit);
  CHECK(parse(wire, {}, {.body_limit = 2}).ec == http::error::body_limit);
  // Not kept: nothing to limit; the 3 bytes are taken and the rest awaited.
  auto unread = parse(wire, {}, {.keep_body = false});
  CHECK_FALSE(unread.ec);
  CHECK_FALSE(unread.done);
  CHECK(unread.consumed == wire.size());
}

TEST_CASE("a body that is not kept has no limit, and only its first KiB stays", "[http1_parser]") {
  const std::string body = sampleBody(3 * 1024 * 1024);
  const std::string wire =
      "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  const Options unread = {.body_limit = 1024 * 1024, .keep_body = false};
  for (size_t read : {size_t{64 * 1024}, size_t{1000}, wire.size()}) {
    INFO(read);
    auto p = parse(wire, readsOf(wire, read), unread);
    REQUIRE(p.done);
    CHECK(p.body == body.substr(0, Http1ResponseParser::kBodyPrefixBytes));
    CHECK(p.consumed == wire.size());
    CHECK(parse(wire, readsOf(wire, read), {.body_limit = 1024 * 1024}).ec ==
          http::error::body_limit);
  }
  std::string chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t at = 0; at < body.size(); at += 100000) {
    const std::string chunk = body.substr(at, 100000);
    char size[16];
    snprintf(size, sizeof size, "%zx", chunk.size());
    chunked += std::string(size) + "\r\n" + chunk + "\r\n";
  }
  chunked += "0\r\n\r\n";
  auto c = parse(chunked, readsOf(chunked, 64 * 1024), unread);
  REQUIRE(c.done);
  CHECK(c.body == body.substr(0, Http1ResponseParser::kBodyPrefixBytes));
  CHECK(parse(chunked, readsOf(chunked, 64 * 1024), {.body_limit = 1024 * 1024}).ec ==
        http::error::body_limit);
  // Short bodies are whole either way.
  CHECK(parse(kSimple, {}, {.keep_body = false}).body == "hello, stampede");
  CHECK(parse(kChunked, everyByte(kChunked), {.keep_body = false}).body == "hello, world");
}

TEST_CASE("a head over kMaxHeadBytes is header_limit however it arrives", "[http1_parser]") {
  auto head = [](size_t size) {
    std::string r = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; r.size() < size; ++i)
      r += "X-Filler-" + std::to_string(i) + ": " + std::string(100, 'h') + "\r\n";
    return r + "Content-Length: 2\r\n\r\nok";
  };
  const std::string fits = head(60 * 1024);
  const std::string over = head(Http1ResponseParser::kMaxHeadBytes + 100);
  for (size_t read : {size_t{64 * 1024}, size_t{1000}, size_t{1} << 20}) {
    INFO(read);
    auto p = parse(fits, readsOf(fits, read));
    REQUIRE(p.done);
    CHECK(p.body == "ok");
    CHECK(p.head.size() == fits.size() - 2);
    CHECK(parse(over, readsOf(over, read)).ec == http::error::header_limit);
  }
}

} // namespace
} // namespace stampede::worker
