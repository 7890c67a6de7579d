// GzipDecoder against bodies gzipped by zlib's own deflate (an independent encoder), at every
// length of a short text: the end of a short deflate stream is where a decoder can lose track
// of which input bytes it used, and then misreads the trailer.
#include "worker/gzip_decoder.h"

#include <catch2/catch.hpp>
#include <zlib.h>

#include <string>

using stampede::worker::GzipDecoder;

namespace {

// A gzip member of `text` (window bits 15 + 16: zlib writes the gzip header and trailer).
std::string gzip(const std::string& text, int level = Z_DEFAULT_COMPRESSION) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&zs, uLong(text.size())) + 32, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  zs.avail_in = uInt(text.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = uInt(out.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string sampleText(size_t n) {
  static const std::string words =
      "Stampede merges every worker's statistics into exact cluster-wide figures and halts the "
      "whole cluster at the first error. <html><head><title>Welcome to nginx!</title></head>";
  std::string s;
  while (s.size() < n)
    s += words;
  s.resize(n);
  return s;
}

} // namespace

TEST_CASE("gzip: every length of a short text decodes, at every compression level", "[gzip]") {
  GzipDecoder decoder;
  for (int level : {1, 6, 9}) {
    for (size_t n = 0; n <= 700; ++n) {
      const std::string text = sampleText(n);
      std::string_view out;
      const char* error = decoder.decode(gzip(text, level), 1 << 20, out);
      INFO("level " << level << ", " << n << " bytes");
      REQUIRE(error == nullptr);
      REQUIRE(out == text);
    }
  }
}

TEST_CASE("gzip: two members back to back decode to both texts", "[gzip]") {
  GzipDecoder decoder;
  std::string_view out;
  REQUIRE(decoder.decode(gzip("first part, ") + gzip("second part"), 1024, out) == nullptr);
  CHECK(out == "first part, second part");
}

TEST_CASE("gzip: a wrong body is named, not decoded", "[gzip]") {
  GzipDecoder decoder;
  std::string_view out;
  const std::string good = gzip(sampleText(300));

  std::string bad_crc = good;
  bad_crc[bad_crc.size() - 8] ^= 0x01;
  CHECK(std::string(decoder.decode(bad_crc, 1024, out)) == "gzip checksum mismatch");

  CHECK(std::string(decoder.decode(good.substr(0, good.size() - 4), 1024, out)) ==
        "truncated gzip trailer");
  CHECK(std::string(decoder.decode(good.substr(0, good.size() / 2), 1024, out)) ==
        "truncated gzip data");
  CHECK(std::string(decoder.decode("plain text, not gzip", 1024, out)) == "not gzip data");
  CHECK(std::string(decoder.decode(good, 100, out)) == GzipDecoder::kTooLarge);

  // And the decoder still works after each failure.
  REQUIRE(decoder.decode(good, 1024, out) == nullptr);
  CHECK(out == sampleText(300));
}

TEST_CASE("gzip: a prefix decodes as far as it goes", "[gzip]") {
  GzipDecoder decoder;
  const std::string text = sampleText(2000);
  const std::string body = gzip(text);
  std::string_view out;
  decoder.decodePrefix(body, 100, out);
  CHECK(out == text.substr(0, 100));
  decoder.decodePrefix("not gzip", 100, out);
  CHECK(out.empty());
}
