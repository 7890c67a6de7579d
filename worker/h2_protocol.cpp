#include "worker/h2_protocol.h"

#include "common/text.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <new>

namespace stampede::worker {
namespace {

constexpr size_t kFrameHeaderBytes = 9;
constexpr uint32_t kMaxWindow = (1u << 31) - 1;
constexpr std::string_view kUserAgent = "stampede/" STAMPEDE_VERSION;

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
}

bool equalsLower(std::string_view name, std::string_view wanted) {
  if (name.size() != wanted.size())
    return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (lower(name[i]) != wanted[i])
      return false;
  return true;
}

// Fields HTTP/2 forbids (RFC 9113, 8.2.2), and Host, which becomes :authority.
bool connectionSpecific(std::string_view name) {
  return equalsLower(name, "host") || equalsLower(name, "connection") ||
         equalsLower(name, "keep-alive") || equalsLower(name, "proxy-connection") ||
         equalsLower(name, "transfer-encoding") || equalsLower(name, "upgrade");
}

std::string codeName(uint32_t code) {
  return std::string(nghttp2_http2_strerror(code)) + " (" + std::to_string(code) + ")";
}

nghttp2_nv field(std::string_view name, std::string_view value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

} // namespace

std::optional<std::string_view> H2Stream::field(std::string_view name) const {
  for (const Field& f : fields) {
    if (f.name_size == name.size() && equalsLower(name, {field_text.data() + f.name, f.name_size}))
      return std::string_view(field_text.data() + f.value, f.value_size);
  }
  return std::nullopt;
}

HeaderList H2Stream::headerList() const {
  HeaderList out;
  for (const Field& f : fields)
    out.emplace_back(field_text.substr(f.name, f.name_size),
                     field_text.substr(f.value, f.value_size));
  return out;
}

// nghttp2's callbacks: no exception crosses them (the C library would be left inconsistent).
struct H2Callbacks {
  static H2Protocol& self(void* user) { return *static_cast<H2Protocol*>(user); }

  static int onBeginFrame(nghttp2_session*, const nghttp2_frame_hd* hd, void* user) noexcept {
    if (H2Stream* s = self(user).find(hd->stream_id)) {
      s->bytes_in += kFrameHeaderBytes + hd->length;
      s->got_frame = true;
    }
    return 0;
  }

  static int onFrameSend(nghttp2_session*, const nghttp2_frame* frame, void* user) noexcept {
    if (H2Stream* s = self(user).find(frame->hd.stream_id))
      s->bytes_out += kFrameHeaderBytes + frame->hd.length;
    return 0;
  }

  static int onFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user) noexcept {
    H2Protocol& p = self(user);
    if (frame->hd.type == NGHTTP2_GOAWAY) {
      p.going_away_ = true;
      p.goaway_code_ = frame->goaway.error_code;
      p.goaway_last_id_ = frame->goaway.last_stream_id;
    } else if (frame->hd.type == NGHTTP2_HEADERS) {
      // An informational response (1xx) is followed by the real one: forget its fields.
      if (H2Stream* s = p.find(frame->hd.stream_id); s && s->status >= 100 && s->status < 200) {
        s->status = 0;
        s->content_length = -1;
        s->clearFields();
      }
    }
    return 0;
  }

  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                      void* user) noexcept {
    H2Stream* s = self(user).find(frame->hd.stream_id);
    if (!s || frame->hd.type != NGHTTP2_HEADERS)
      return 0;
    const std::string_view n(reinterpret_cast<const char*>(name), name_length);
    const std::string_view v(reinterpret_cast<const char*>(value), value_length);
    try {
      // nghttp2's messaging checks are off (see H2Protocol's constructor); its field checks are
      // cheap, and a malformed field fails here as it does in the HTTP/1.1 parser.
      if (!nghttp2_check_header_name(name, name_length) ||
          !nghttp2_check_header_value(value, value_length)) {
        s->error = TransportError::Protocol;
        s->detail =
            "malformed response field " + common::quoteValue(n) + ": " + common::quoteValue(v);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; // nghttp2 resets the stream
      }
      if (n == ":status") {
        int status = 0;
        std::from_chars(v.data(), v.data() + v.size(), status);
        s->status = status;
      } else if (!n.empty() && n[0] != ':') {
        const auto at = uint32_t(s->field_text.size());
        s->field_text.append(n);
        s->field_text.append(v);
        s->fields.push_back({at, uint32_t(n.size()), at + uint32_t(n.size()), uint32_t(v.size())});
        if (n == "content-encoding" && v.find("gzip") != std::string_view::npos) {
          s->gzip = true;
        } else if (n == "content-length") {
          int64_t length = -1;
          const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), length);
          if (ec != std::errc() || end != v.data() + v.size() || length < 0) {
            s->error = TransportError::Protocol;
            s->detail = "bad Content-Length: " + std::string(v);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; // nghttp2 resets the stream
          }
          s->content_length = length;
        }
      }
    } catch (...) {
      return NGHTTP2_ERR_CALLBACK_FAILURE; // out of memory
    }
    return 0;
  }

  static int onData(nghttp2_session* session, uint8_t, int32_t id, const uint8_t* data,
                    size_t length, void* user) noexcept {
    H2Protocol& p = self(user);
    H2Stream* s = p.find(id);
    if (!s)
      return 0;
    const char* bytes = reinterpret_cast<const char*>(data);
    s->data_bytes += length;
    if (s->keep_body) {
      if (s->body.size() + length > s->max_body) {
        s->error = TransportError::BodyTooLarge;
        s->detail = "body over http.max_body (" + std::to_string(s->max_body) + " bytes)";
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        p.close(*s);
        return 0;
      }
      s->body.append(bytes, length);
    } else if (s->body.size() < kBodyExcerptBytes) {
      s->body.append(bytes, std::min(length, kBodyExcerptBytes - s->body.size()));
    }
    return 0;
  }

  static int onStreamClose(nghttp2_session*, int32_t id, uint32_t code, void* user) noexcept {
    H2Protocol& p = self(user);
    H2Stream* s = p.find(id);
    if (!s)
      return 0;
    if (s->error != TransportError::None) {
      // Failed already, on our side (its reset is ours).
    } else if (code == NGHTTP2_NO_ERROR) {
      if (s->status == 0) {
        s->error = TransportError::Protocol;
        s->detail = "stream closed without a response";
      } else if (s->content_length >= 0 && uint64_t(s->content_length) != s->data_bytes &&
                 !s->head && s->status != 204 && s->status != 304) {
        s->error = TransportError::Protocol;
        s->detail = "body of " + std::to_string(s->data_bytes) + " bytes, Content-Length " +
                    std::to_string(s->content_length);
      }
    } else if (p.going_away_ && id > p.goaway_last_id_) {
      // nghttp2 closes the streams a GOAWAY left out with REFUSED_STREAM: the server never
      // saw them.
      s->unprocessed = true;
      s->error =
          p.goaway_code_ == NGHTTP2_NO_ERROR ? TransportError::Reset : TransportError::GoAway;
      s->detail = "GOAWAY " + codeName(p.goaway_code_) + " with last stream " +
                  std::to_string(p.goaway_last_id_) + ", before stream " + std::to_string(id);
    } else if (code == NGHTTP2_REFUSED_STREAM) {
      s->error = TransportError::RefusedStream;
      s->detail = "RST_STREAM " + codeName(code);
    } else if (p.going_away_ && p.goaway_code_ != NGHTTP2_NO_ERROR) {
      s->error = TransportError::GoAway;
      s->detail = "GOAWAY " + codeName(p.goaway_code_);
    } else {
      s->error = TransportError::StreamReset;
      s->detail = "RST_STREAM " + codeName(code);
    }
    p.close(*s);
    return 0;
  }

  // A request that never left (the session is going away): it fails as unprocessed.
  static int onFrameNotSend(nghttp2_session*, const nghttp2_frame* frame, int lib_error,
                            void* user) noexcept {
    H2Protocol& p = self(user);
    H2Stream* s = p.find(frame->hd.stream_id);
    if (!s || frame->hd.type != NGHTTP2_HEADERS)
      return 0;
    s->unprocessed = true;
    s->error = p.going_away_ && p.goaway_code_ != NGHTTP2_NO_ERROR ? TransportError::GoAway
                                                                   : TransportError::Reset;
    s->detail = std::string("request not sent: ") + nghttp2_strerror(lib_error);
    p.close(*s);
    return 0;
  }

  static ssize_t readBody(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*) noexcept {
    auto* s = static_cast<H2Stream*>(source->ptr);
    const size_t n = std::min(length, s->body_out.size() - s->body_sent);
    std::memcpy(buf, s->body_out.data() + s->body_sent, n);
    s->body_sent += n;
    if (s->body_sent == s->body_out.size())
      *flags |= NGHTTP2_DATA_FLAG_EOF;
    return ssize_t(n);
  }
};

bool sendAgain(const H2Stream& stream, bool reused, int attempt) {
  if (stream.error == TransportError::None)
    return false;
  if (stream.unprocessed)
    return attempt + 1 < kH2MaxAttempts;
  return attempt == 0 && reused && !stream.got_frame && stream.error == TransportError::Reset;
}

void wakeOrder(std::vector<H2Stream*>& closed) {
  const auto completed = std::partition(closed.begin(), closed.end(),
                                        [](const H2Stream* s) { return s->unprocessed; });
  if (completed - closed.begin() > 1)
    std::sort(closed.begin(), completed,
              [](const H2Stream* a, const H2Stream* b) { return a->ticket < b->ticket; });
}

namespace {

// Each block starts with a header that names its size class (kLarge: its own malloc) and its
// capacity, 16 bytes so that what follows keeps malloc's alignment.
struct BlockHeader {
  uint64_t capacity;
  uint32_t size_class;
};
constexpr size_t kHeaderBytes = 16;
static_assert(sizeof(BlockHeader) <= kHeaderBytes);
constexpr size_t kSmallest = 64;
constexpr uint32_t kLarge = ~0u;

uint32_t sizeClass(size_t size) {
  uint32_t c = 0;
  for (size_t capacity = kSmallest; capacity < size; capacity <<= 1)
    ++c;
  return c;
}

BlockHeader& headerOf(void* block) {
  return *reinterpret_cast<BlockHeader*>(static_cast<char*>(block) - kHeaderBytes);
}

} // namespace

H2Memory::H2Memory() {
  mem_.mem_user_data = this;
  mem_.malloc = [](size_t size, void* self) {
    return static_cast<H2Memory*>(self)->allocate(size);
  };
  mem_.free = [](void* block, void* self) { static_cast<H2Memory*>(self)->release(block); };
  mem_.calloc = [](size_t count, size_t size, void* self) -> void* {
    if (size != 0 && count > SIZE_MAX / size)
      return nullptr;
    void* block = static_cast<H2Memory*>(self)->allocate(count * size);
    if (block)
      std::memset(block, 0, count * size);
    return block;
  };
  mem_.realloc = [](void* block, size_t size, void* self) {
    return static_cast<H2Memory*>(self)->reallocate(block, size);
  };
}

H2Memory::~H2Memory() {
  for (Free*& list : free_)
    while (list) {
      Free* next = list->next;
      std::free(reinterpret_cast<char*>(list) - kHeaderBytes);
      list = next;
    }
}

void* H2Memory::allocate(size_t size) noexcept {
  const uint32_t c = sizeClass(size);
  if (c < kClasses) {
    if (Free* block = free_[c]) {
      free_[c] = block->next;
      return block;
    }
  }
  const size_t capacity = c < kClasses ? kSmallest << c : size;
  auto* raw = static_cast<char*>(std::malloc(kHeaderBytes + capacity));
  if (!raw)
    return nullptr;
  new (raw) BlockHeader{capacity, c < kClasses ? c : kLarge};
  return raw + kHeaderBytes;
}

void H2Memory::release(void* block) noexcept {
  if (!block)
    return;
  const uint32_t c = headerOf(block).size_class;
  if (c == kLarge) {
    std::free(static_cast<char*>(block) - kHeaderBytes);
    return;
  }
  auto* entry = static_cast<Free*>(block);
  entry->next = free_[c];
  free_[c] = entry;
}

void* H2Memory::reallocate(void* block, size_t size) noexcept {
  if (!block)
    return allocate(size);
  const size_t capacity = headerOf(block).capacity;
  if (size <= capacity && headerOf(block).size_class != kLarge)
    return block; // still fits
  void* moved = allocate(size);
  if (!moved)
    return nullptr;
  std::memcpy(moved, block, std::min<size_t>(capacity, size));
  release(block);
  return moved;
}

H2Protocol::H2Protocol(const H2Settings& settings) {
  nghttp2_session_callbacks* callbacks = nullptr;
  if (nghttp2_session_callbacks_new(&callbacks) != 0)
    throw std::bad_alloc();
  nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, H2Callbacks::onBeginFrame);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, H2Callbacks::onFrameSend);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, H2Callbacks::onFrameRecv);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, H2Callbacks::onHeader);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, H2Callbacks::onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, H2Callbacks::onStreamClose);
  nghttp2_session_callbacks_set_on_frame_not_send_callback(callbacks, H2Callbacks::onFrameNotSend);
  nghttp2_option* option = nullptr;
  if (nghttp2_option_new(&option) != 0) {
    nghttp2_session_callbacks_del(callbacks);
    throw std::bad_alloc();
  }
  // One stream until the server's first SETTINGS says how many it takes: a server that allows
  // fewer than we would send at once refuses the rest (REFUSED_STREAM). nghttp2 replaces this
  // with the server's figure, or with no limit when it gives none.
  nghttp2_option_set_peer_max_concurrent_streams(option, 1);
  // No HTTP messaging checks (field names and values, pseudo-fields, Content-Length against
  // DATA): a seventh of the client's instructions per request. onHeader checks each field's
  // name and value with nghttp2's own cheap checks, a response without :status fails here, and
  // Content-Length against DATA is checked here.
  nghttp2_option_set_no_http_messaging(option, 1);
  const int rv = nghttp2_session_client_new3(&session_, callbacks, this, option,
                                             settings.memory ? settings.memory->mem() : nullptr);
  nghttp2_option_del(option);
  nghttp2_session_callbacks_del(callbacks);
  if (rv != 0)
    throw std::bad_alloc();
  const nghttp2_settings_entry entries[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, settings.window},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, entries, std::size(entries));
  // The connection's window holds every stream's at once.
  const uint64_t connection_window = uint64_t(settings.window) * std::max(1u, settings.streams);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        int32_t(std::min<uint64_t>(connection_window, kMaxWindow)));
}

H2Protocol::~H2Protocol() {
  nghttp2_session_del(session_);
}

bool H2Protocol::submit(H2Stream& stream, std::string_view method, std::string_view scheme,
                        std::string_view authority, std::string_view path,
                        const HeaderList* headers, std::string_view body, bool default_agent,
                        bool default_encoding) {
  stream.id = -1;
  stream.closed = false;
  stream.status = 0;
  stream.clearFields();
  stream.body.clear();
  stream.gzip = false;
  stream.content_length = -1;
  stream.data_bytes = 0;
  stream.head = method == "HEAD";
  stream.bytes_in = 0;
  stream.bytes_out = 0;
  stream.got_frame = false;
  stream.unprocessed = false;
  stream.error = TransportError::None;
  stream.detail.clear();
  stream.body_out = body;
  stream.body_sent = 0;
  stream.owner = this;
  if (goingAway()) {
    stream.unprocessed = true;
    stream.error = TransportError::Reset;
    stream.detail = "the connection is going away";
    stream.closed = true;
    return false;
  }
  // Lowered names first, in one buffer that does not move while the fields point into it.
  lowered_.clear();
  if (headers)
    for (const auto& [name, value] : *headers)
      for (char c : name)
        lowered_.push_back(lower(c));
  nghttp2_nv fields[64 + 8];
  std::vector<nghttp2_nv> many; // when the scenario sends more than 64 fields
  nghttp2_nv* nv = fields;
  size_t count = 0;
  const size_t wanted = 6 + (headers ? headers->size() : 0) + 1;
  if (wanted > std::size(fields)) {
    many.resize(wanted);
    nv = many.data();
  }
  nv[count++] = field(":method", method);
  nv[count++] = field(":scheme", scheme);
  nv[count++] = field(":authority", authority);
  nv[count++] = field(":path", path.empty() ? std::string_view("/") : path);
  if (default_agent)
    nv[count++] = field("user-agent", kUserAgent);
  if (default_encoding)
    nv[count++] = field("accept-encoding", "gzip");
  size_t offset = 0;
  if (headers) {
    for (const auto& [name, value] : *headers) {
      const std::string_view lowered(lowered_.data() + offset, name.size());
      offset += name.size();
      if (!connectionSpecific(lowered))
        nv[count++] = field(lowered, value);
    }
  }
  char length[24];
  const bool with_body = !body.empty() || method == "POST" || method == "PUT" || method == "PATCH";
  if (with_body) {
    const auto end = std::to_chars(length, length + sizeof length, body.size()).ptr;
    nv[count++] = field("content-length", std::string_view(length, size_t(end - length)));
  }
  nghttp2_data_provider provider{};
  provider.source.ptr = &stream;
  provider.read_callback = H2Callbacks::readBody;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nv, count,
                                            body.empty() ? nullptr : &provider, &stream);
  if (id < 0) {
    stream.error = TransportError::Protocol;
    stream.detail = std::string("HTTP/2 request refused by nghttp2: ") + nghttp2_strerror(id);
    stream.closed = true;
    return false;
  }
  stream.id = id;
  open_.emplace_back(id, &stream);
  return true;
}

bool H2Protocol::receive(const uint8_t* data, size_t size) {
  const ssize_t rv = nghttp2_session_mem_recv(session_, data, size);
  if (rv < 0) {
    fail(TransportError::Protocol, std::string("HTTP/2: ") + nghttp2_strerror(int(rv)));
    return false;
  }
  return true;
}

void H2Protocol::send(std::string& out) {
  for (;;) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      fail(TransportError::Protocol, std::string("HTTP/2: ") + nghttp2_strerror(int(n)));
      return;
    }
    if (n == 0)
      return;
    out.append(reinterpret_cast<const char*>(data), size_t(n));
  }
}

void H2Protocol::forget(H2Stream& stream) noexcept {
  if (stream.owner != this || stream.closed || stream.id < 0)
    return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream.id, NGHTTP2_CANCEL);
  std::erase_if(open_, [&](const auto& entry) { return entry.second == &stream; });
  stream.closed = true;
  stream.id = -1;
}

void H2Protocol::close(H2Stream& stream) noexcept {
  std::erase_if(open_, [&](const auto& entry) { return entry.second == &stream; });
  stream.closed = true;
  stream.id = -1;
  closed_.push_back(&stream);
}

void H2Protocol::fail(TransportError error, const std::string& detail) noexcept {
  broken_ = true;
  const size_t in_flight = open_.size();
  while (!open_.empty()) {
    H2Stream& s = *open_.back().second;
    s.error = error;
    try {
      s.detail = detail;
      if (in_flight > 1 && error == TransportError::Reset)
        s.detail += " (" + std::to_string(in_flight) + " streams in flight)";
    } catch (...) {
    }
    // A goaway that left it out, or no byte of it: the server did not answer it.
    if (going_away_ && s.id > goaway_last_id_)
      s.unprocessed = true;
    close(s);
  }
}

bool H2Protocol::finished() const {
  return broken_ || (!nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_));
}

} // namespace stampede::worker
