#include "common/files.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <sys/stat.h>

namespace stampede::common {

std::string describeBytes(size_t bytes) {
  if (bytes >= (size_t(1) << 20) && bytes % (size_t(1) << 20) == 0)
    return std::to_string(bytes >> 20) + " MiB";
  if (bytes >= 1024 && bytes % 1024 == 0)
    return std::to_string(bytes >> 10) + " KiB";
  return std::to_string(bytes) + " bytes";
}

std::optional<std::string> readWholeFile(const std::string& path, size_t max_bytes,
                                         const std::string& what, std::string& problem) {
  // Checked before opening: opening a FIFO without a writer, or some devices, would block.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    problem = std::strerror(errno);
    return std::nullopt;
  }
  if (S_ISDIR(st.st_mode)) {
    problem = "a directory, not a file";
    return std::nullopt;
  }
  // Pipes are read (`<(generate)` is handy); devices and sockets are never configuration.
  if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
    problem = "a device or a socket, not a file";
    return std::nullopt;
  }
  const std::string over = "over the " + describeBytes(max_bytes) + " limit for " + what;
  if (S_ISREG(st.st_mode) && uintmax_t(st.st_size) > max_bytes) {
    char size[32];
    std::snprintf(size, sizeof size, "%.1f MiB", double(st.st_size) / double(1 << 20));
    problem = std::string(size) + ", " + over;
    return std::nullopt;
  }
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    problem = std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buf[65536];
  size_t n = 0;
  // One byte past the limit tells "exactly at the limit" from "over it" (a file may grow).
  while (text.size() <= max_bytes && (n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int error = errno;
  std::fclose(f);
  if (failed) {
    problem = std::strerror(error);
    return std::nullopt;
  }
  if (text.size() > max_bytes) {
    problem = "more than " + describeBytes(max_bytes) + ", " + over;
    return std::nullopt;
  }
  return text;
}

} // namespace stampede::common
