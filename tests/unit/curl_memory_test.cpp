// worker/curl_memory: the allocation functions handed to libcurl keep what is written, reuse
// a freed block first (per thread, by size class), and follow malloc's rules for realloc,
// calloc and strdup.
#include "worker/curl_memory.h"

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

using namespace stampede::worker;

namespace {

bool aligned16(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

} // namespace

TEST_CASE("curl's heap: blocks hold what was written, aligned as malloc's", "[curl_memory]") {
  std::vector<void*> blocks;
  for (size_t size : {0, 1, 47, 48, 49, 100, 1000, 4000, 8176, 8177, 100000}) {
    auto* p = static_cast<unsigned char*>(curlMalloc(size));
    REQUIRE(p);
    CHECK(aligned16(p));
    for (size_t i = 0; i < size; ++i)
      p[i] = static_cast<unsigned char>(i * 7 + size);
    blocks.push_back(p);
  }
  // No block overlaps another: each still holds its own pattern.
  size_t k = 0;
  for (size_t size : {0, 1, 47, 48, 49, 100, 1000, 4000, 8176, 8177, 100000}) {
    auto* p = static_cast<unsigned char*>(blocks[k++]);
    bool intact = true;
    for (size_t i = 0; i < size; ++i)
      intact &= p[i] == static_cast<unsigned char>(i * 7 + size);
    CHECK(intact);
    curlFree(p);
  }
  curlFree(nullptr); // as free(NULL)
}

TEST_CASE("curl's heap: a freed block of a size class is the next one given", "[curl_memory]") {
  void* a = curlMalloc(40);
  curlFree(a);
  void* b = curlMalloc(30); // the same class: the block just freed, still in cache
  CHECK(b == a);
  void* c = curlMalloc(30); // a new one
  CHECK(c != b);
  curlFree(b);
  curlFree(c);
}

TEST_CASE("curl's heap: realloc keeps the contents, calloc zeroes, strdup copies",
          "[curl_memory]") {
  auto* p = static_cast<char*>(curlRealloc(nullptr, 10)); // as malloc
  REQUIRE(p);
  std::memcpy(p, "012345678", 10);
  p = static_cast<char*>(curlRealloc(p, 20)); // within its block: the same one
  REQUIRE(p);
  CHECK(std::string(p) == "012345678");
  p = static_cast<char*>(curlRealloc(p, 50000)); // moves to a large block
  REQUIRE(p);
  CHECK(std::string(p) == "012345678");
  std::memset(p + 10, 'x', 49990);
  p = static_cast<char*>(curlRealloc(p, 60000)); // large to larger
  REQUIRE(p);
  CHECK(std::string(p, 9) == "012345678");
  CHECK(p[59999 - 10000] == 'x');
  curlFree(p);

  // calloc zeroes a recycled block too.
  auto* dirty = static_cast<unsigned char*>(curlMalloc(200));
  std::memset(dirty, 0xAB, 200);
  curlFree(dirty);
  auto* zeroed = static_cast<unsigned char*>(curlCalloc(50, 4));
  REQUIRE(zeroed);
  bool all_zero = true;
  for (int i = 0; i < 200; ++i)
    all_zero &= zeroed[i] == 0;
  CHECK(all_zero);
  curlFree(zeroed);
  CHECK(curlCalloc(SIZE_MAX / 2, 4) == nullptr); // the product overflows

  char* copy = curlStrdup("stampede");
  REQUIRE(copy);
  CHECK(std::string(copy) == "stampede");
  curlFree(copy);
}

TEST_CASE("curl's heap: a block freed on another thread is reused there", "[curl_memory]") {
  void* block = curlMalloc(100);
  void* reused = nullptr;
  std::thread other([&] {
    curlFree(block);
    reused = curlMalloc(100);
    curlFree(reused);
  });
  other.join();
  CHECK(reused == block);
}
