#include "common/json_path.h"

namespace stampede::common {

std::optional<JsonPath> parseJsonPath(std::string_view text) {
  JsonPath path;
  path.text = std::string(text);
  if (text.empty() || text.front() != '$')
    return std::nullopt;
  size_t i = 1;
  while (i < text.size()) {
    if (text[i] == '.') {
      const size_t start = ++i;
      while (i < text.size() && text[i] != '.' && text[i] != '[')
        ++i;
      if (i == start)
        return std::nullopt;
      path.segments.push_back({std::string(text.substr(start, i - start)), -1});
    } else if (text[i] == '[') {
      ++i;
      if (i < text.size() && (text[i] == '\'' || text[i] == '"')) {
        const char quote = text[i++];
        const size_t close = text.find(quote, i);
        if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ']')
          return std::nullopt;
        path.segments.push_back({std::string(text.substr(i, close - i)), -1});
        i = close + 2;
      } else {
        const size_t start = i;
        int64_t index = 0;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
          index = index * 10 + (text[i] - '0');
          if (index > (int64_t(1) << 40))
            return std::nullopt;
          ++i;
        }
        if (i == start || i >= text.size() || text[i] != ']')
          return std::nullopt;
        path.segments.push_back({std::string(), index});
        ++i;
      }
    } else {
      return std::nullopt;
    }
  }
  return path;
}

const nlohmann::json* findJson(const nlohmann::json& document, const JsonPath& path) {
  const nlohmann::json* at = &document;
  for (const auto& segment : path.segments) {
    if (segment.index >= 0) {
      if (!at->is_array() || size_t(segment.index) >= at->size())
        return nullptr;
      at = &(*at)[size_t(segment.index)];
    } else {
      if (!at->is_object())
        return nullptr;
      auto it = at->find(segment.key);
      if (it == at->end())
        return nullptr;
      at = &*it;
    }
  }
  return at;
}

std::string jsonCaptureText(const nlohmann::json& value) {
  if (value.is_string())
    return value.get<std::string>();
  return value.dump();
}

std::optional<nlohmann::json> parseJsonBody(std::string_view body) {
  auto parsed = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    return std::nullopt;
  return parsed;
}

} // namespace stampede::common
