#include "common/files.h"

#include <cerrno>
#include <cstdio>

namespace stampede::common {

std::optional<std::string> readWholeFile(const std::string& path, int& error) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    error = errno;
    return std::nullopt;
  }
  std::string text;
  char buf[65536];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0)
    text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  error = errno;
  std::fclose(f);
  if (failed)
    return std::nullopt;
  return text;
}

} // namespace stampede::common
