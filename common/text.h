// Text helpers shared by the scenario loader and the template engine: case-insensitive
// comparison, trimming, "did you mean" suggestions, quoting values for one-line errors.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

namespace stampede::common {

bool iequalsPrefix(std::string_view text, std::string_view prefix);
bool isAlnum(char c);
bool isHex(char c);

size_t editDistance(std::string_view a, std::string_view b);
// " (did you mean 'x'?)" when one candidate is within two edits, else "".
std::string didYouMean(std::string_view word, std::span<const std::string_view> candidates);
std::string didYouMean(std::string_view word, std::initializer_list<std::string_view> candidates);

// `text` in double quotes, control characters escaped, cut to about 60 bytes.
std::string quoteValue(std::string_view text);
// Text for XML 1.0 and HTML (junit.xml, report.html): the five special characters escaped, and
// the control characters XML cannot carry at all (below 0x20 but tab, newline and return) as \xNN.
std::string markupEscape(std::string_view text);

bool iequals(std::string_view a, std::string_view b);
std::string lower(std::string_view s);
std::string upper(std::string_view s);
std::string_view trim(std::string_view s);

// Key paths as errors write them: `load.users`, `flows[0]`.
std::string join(const std::string& path, std::string_view key);
std::string indexed(const std::string& path, size_t i);

} // namespace stampede::common
