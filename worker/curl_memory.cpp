#include "worker/curl_memory.h"

#include <curl/curl.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace stampede::worker {
namespace {

// Every block starts with this; the caller's bytes follow, 16-byte aligned as malloc's.
struct alignas(16) Header {
  uint32_t size_class; // kLarge: straight from malloc
  uint64_t usable;     // bytes the caller may use
};
static_assert(sizeof(Header) == 16);

constexpr uint32_t kClasses = 8; // blocks of 64 B to 8 KiB, headers included
constexpr size_t kSmallestBlock = 64;
constexpr uint32_t kLarge = kClasses;
// Freed blocks kept per class and thread; beyond it they go back to malloc, so a thread that
// frees what others allocated keeps at most this many.
constexpr size_t kMaxKept = 1024;

size_t blockSize(uint32_t size_class) {
  return kSmallestBlock << size_class;
}

uint32_t classFor(size_t size) {
  const size_t total = size + sizeof(Header);
  uint32_t c = 0;
  while (c < kClasses && blockSize(c) < total)
    ++c;
  return c; // kLarge when none is big enough
}

struct FreeBlock {
  FreeBlock* next;
};

// One thread's freed blocks. Given back to malloc when the thread ends.
struct FreeLists {
  FreeBlock* head[kClasses] = {};
  size_t count[kClasses] = {};
  ~FreeLists() {
    for (uint32_t c = 0; c < kClasses; ++c)
      while (FreeBlock* block = head[c]) {
        head[c] = block->next;
        std::free(block);
      }
  }
};

thread_local FreeLists lists;

void* userPart(Header* header) {
  return header + 1;
}

Header* headerOf(void* block) {
  return static_cast<Header*>(block) - 1;
}

} // namespace

void* curlMalloc(size_t size) noexcept {
  const uint32_t c = classFor(size);
  Header* header;
  if (c == kLarge) {
    if (size > SIZE_MAX - sizeof(Header))
      return nullptr;
    header = static_cast<Header*>(std::malloc(sizeof(Header) + size));
    if (!header)
      return nullptr;
    header->usable = size;
  } else if (FreeBlock* kept = lists.head[c]) {
    lists.head[c] = kept->next;
    --lists.count[c];
    header = reinterpret_cast<Header*>(kept);
    header->usable = blockSize(c) - sizeof(Header);
  } else {
    header = static_cast<Header*>(std::malloc(blockSize(c)));
    if (!header)
      return nullptr;
    header->usable = blockSize(c) - sizeof(Header);
  }
  header->size_class = c;
  return userPart(header);
}

void curlFree(void* block) noexcept {
  if (!block)
    return;
  Header* header = headerOf(block);
  const uint32_t c = header->size_class;
  if (c == kLarge || lists.count[c] >= kMaxKept) {
    std::free(header);
    return;
  }
  auto* kept = reinterpret_cast<FreeBlock*>(header);
  kept->next = lists.head[c];
  lists.head[c] = kept;
  ++lists.count[c];
}

void* curlRealloc(void* block, size_t size) noexcept {
  if (!block)
    return curlMalloc(size);
  Header* header = headerOf(block);
  if (size <= header->usable)
    return block;
  void* grown = curlMalloc(size);
  if (!grown)
    return nullptr; // the old block stays valid, as with realloc
  std::memcpy(grown, block, header->usable);
  curlFree(block);
  return grown;
}

char* curlStrdup(const char* text) noexcept {
  const size_t size = std::strlen(text) + 1;
  auto* copy = static_cast<char*>(curlMalloc(size));
  if (copy)
    std::memcpy(copy, text, size);
  return copy;
}

void* curlCalloc(size_t count, size_t size) noexcept {
  if (size && count > SIZE_MAX / size)
    return nullptr;
  void* block = curlMalloc(count * size);
  if (block)
    std::memset(block, 0, count * size);
  return block;
}

void curlGlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] {
    curl_global_init_mem(CURL_GLOBAL_DEFAULT, &curlMalloc, &curlFree, &curlRealloc, &curlStrdup,
                         &curlCalloc);
  });
}

} // namespace stampede::worker
