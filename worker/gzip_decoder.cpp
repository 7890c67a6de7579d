#include "worker/gzip_decoder.h"

#include <boost/crc.hpp>

#include <algorithm>
#include <cstdint>

namespace stampede::worker {
namespace {

namespace beast = boost::beast;
using beast::error_code;

uint32_t littleEndian32(const char* p) {
  auto b = [p](int i) { return uint32_t(static_cast<uint8_t>(p[i])); };
  return b(0) | b(1) << 8 | b(2) << 16 | b(3) << 24;
}

} // namespace

const char* GzipDecoder::decode(std::string_view in, size_t limit, std::string_view& out) {
  constexpr size_t kMaxRatio = 1032; // deflate's best: a bound for the size the trailer claims
  auto byte = [&in](size_t i) { return static_cast<uint8_t>(in[i]); };
  size_t pos = 0;
  size_t produced = 0;
  if (in.size() >= 4) {
    // The last member's decoded size, from its trailer: right for the usual single member.
    // One byte more lets inflate see the end of the stream without growing the buffer.
    size_t hint = std::min<size_t>(
        {size_t{littleEndian32(in.data() + in.size() - 4)} + 1, in.size() * kMaxRatio, limit + 1});
    if (buffer_.size() < hint)
      buffer_.resize(hint);
  }
  do {
    const char* error = nullptr;
    size_t p = pos + headerSize(in, pos, error);
    if (error)
      return error;

    const size_t member_begin = produced;
    inflate_.reset();
    beast::zlib::z_params zs;
    zs.next_in = in.data() + p;
    zs.avail_in = in.size() - p;
    for (;;) {
      if (produced == buffer_.size()) {
        if (buffer_.size() > limit)
          return kTooLarge;
        buffer_.resize(std::min(std::max<size_t>(buffer_.size() * 2, 16 * 1024), limit + 1));
      }
      zs.next_out = buffer_.data() + produced;
      zs.avail_out = buffer_.size() - produced;
      error_code ec;
      inflate_.write(zs, beast::zlib::Flush::none, ec);
      produced = buffer_.size() - zs.avail_out;
      if (ec == beast::zlib::error::end_of_stream)
        break;
      if (ec == beast::zlib::error::need_buffers && zs.avail_out != 0)
        return "truncated gzip data";
      if (ec && ec != beast::zlib::error::need_buffers)
        return "corrupt gzip data";
    }
    if (produced > limit)
      return kTooLarge;
    p = in.size() - zs.avail_in;
    // The trailer: CRC-32 and length (mod 2^32) of what this member decodes to.
    if (in.size() - p < 8)
      return "truncated gzip trailer";
    boost::crc_32_type crc;
    crc.process_bytes(buffer_.data() + member_begin, produced - member_begin);
    if (crc.checksum() != littleEndian32(in.data() + p) ||
        uint32_t(produced - member_begin) != littleEndian32(in.data() + p + 4))
      return "gzip checksum mismatch";
    pos = p + 8;
    // Another member may follow; anything else is trailing garbage, ignored (as gzip does).
  } while (in.size() - pos >= 2 && byte(pos) == 0x1f && byte(pos + 1) == 0x8b);
  out = std::string_view(buffer_.data(), produced);
  return nullptr;
}

size_t GzipDecoder::headerSize(std::string_view in, size_t pos, const char*& error) {
  auto byte = [&in](size_t i) { return static_cast<uint8_t>(in[i]); };
  // Magic, method 8 (deflate), flags, 6 bytes we skip.
  if (in.size() - pos < 10 || byte(pos) != 0x1f || byte(pos + 1) != 0x8b || byte(pos + 2) != 8) {
    error = "not gzip data";
    return 0;
  }
  const uint8_t flags = byte(pos + 3);
  if (flags & 0xe0) {
    error = "reserved gzip flags set";
    return 0;
  }
  size_t p = pos + 10;
  if (flags & 0x04) { // FEXTRA: a length, then that much
    if (in.size() - p < 2) {
      error = "truncated gzip header";
      return 0;
    }
    p += 2 + (byte(p) | size_t(byte(p + 1)) << 8);
  }
  for (uint8_t zero_terminated : {uint8_t{0x08}, uint8_t{0x10}}) { // FNAME, FCOMMENT
    if ((flags & zero_terminated) && p < in.size()) {
      size_t zero = in.find('\0', p);
      p = zero == std::string_view::npos ? in.size() + 1 : zero + 1;
    }
  }
  if (flags & 0x02) // FHCRC
    p += 2;
  if (p > in.size()) {
    error = "truncated gzip header";
    return 0;
  }
  return p - pos;
}

void GzipDecoder::decodePrefix(std::string_view in, size_t limit, std::string_view& out) {
  out = {};
  const char* error = nullptr;
  const size_t p = headerSize(in, 0, error);
  if (error)
    return;
  if (buffer_.size() < limit)
    buffer_.resize(limit);
  inflate_.reset();
  beast::zlib::z_params zs;
  zs.next_in = in.data() + p;
  zs.avail_in = in.size() - p;
  zs.next_out = buffer_.data();
  zs.avail_out = limit;
  error_code ec;
  // One call: it stops where the input or the output runs out, or at an error.
  inflate_.write(zs, beast::zlib::Flush::none, ec);
  out = std::string_view(buffer_.data(), limit - zs.avail_out);
}

} // namespace stampede::worker
