#include "worker/gzip_decoder.h"

#include <algorithm>
#include <cstdint>

namespace stampede::worker {
namespace {

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
    z_stream& zs = stream();
    inflateReset(&zs);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + p));
    zs.avail_in = uInt(std::min<size_t>(in.size() - p, UINT32_MAX));
    for (;;) {
      if (produced == buffer_.size()) {
        if (buffer_.size() > limit)
          return kTooLarge;
        buffer_.resize(std::min(std::max<size_t>(buffer_.size() * 2, 16 * 1024), limit + 1));
      }
      zs.next_out = reinterpret_cast<Bytef*>(buffer_.data() + produced);
      zs.avail_out = uInt(std::min<size_t>(buffer_.size() - produced, UINT32_MAX));
      const int rc = inflate(&zs, Z_NO_FLUSH);
      produced = size_t(reinterpret_cast<char*>(zs.next_out) - buffer_.data());
      if (rc == Z_STREAM_END)
        break;
      if (rc == Z_BUF_ERROR && zs.avail_out != 0)
        return "truncated gzip data";
      if (rc != Z_OK && rc != Z_BUF_ERROR)
        return "corrupt gzip data";
    }
    if (produced > limit)
      return kTooLarge;
    p = size_t(reinterpret_cast<const char*>(zs.next_in) - in.data());
    // The trailer: CRC-32 and length (mod 2^32) of what this member decodes to.
    if (in.size() - p < 8)
      return "truncated gzip trailer";
    const auto* decoded = reinterpret_cast<const Bytef*>(buffer_.data() + member_begin);
    const uint32_t crc =
        uint32_t(crc32_z(crc32_z(0, nullptr, 0), decoded, produced - member_begin));
    if (crc != littleEndian32(in.data() + p) ||
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
  z_stream& zs = stream();
  inflateReset(&zs);
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data() + p));
  zs.avail_in = uInt(std::min<size_t>(in.size() - p, UINT32_MAX));
  zs.next_out = reinterpret_cast<Bytef*>(buffer_.data());
  zs.avail_out = uInt(std::min<size_t>(limit, UINT32_MAX));
  // One call: it stops where the input or the output runs out, or at an error.
  inflate(&zs, Z_NO_FLUSH);
  out = std::string_view(buffer_.data(),
                         size_t(reinterpret_cast<char*>(zs.next_out) - buffer_.data()));
}

z_stream& GzipDecoder::stream() {
  if (!stream_) {
    stream_ = std::make_unique<z_stream>();
    // Raw deflate (negative window bits): the gzip header and trailer are read here, so that
    // every member's checks say which part is wrong. zlib's own memory functions.
    if (inflateInit2(stream_.get(), -MAX_WBITS) != Z_OK)
      throw std::bad_alloc();
  }
  return *stream_;
}

GzipDecoder::~GzipDecoder() {
  if (stream_)
    inflateEnd(stream_.get());
}

} // namespace stampede::worker
