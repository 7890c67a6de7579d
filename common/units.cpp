#include "common/units.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>

namespace stampede::common {

namespace {

__extension__ typedef unsigned __int128 Wide; // room for value * unit before the range check

constexpr uint64_t kUsPerMs = 1'000;
constexpr uint64_t kUsPerSecond = 1'000'000;
constexpr uint64_t kUsPerMinute = 60 * kUsPerSecond;
constexpr uint64_t kUsPerHour = 60 * kUsPerMinute;
constexpr uint64_t kMaxUs = uint64_t(std::numeric_limits<int64_t>::max());

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// "12" or "12.5", no sign, no exponent, digits on both sides of the dot. Returns the length
// of the number at the front of `text`, 0 if there is none.
size_t numberLength(std::string_view text) {
  size_t i = 0;
  while (i < text.size() && isDigit(text[i]))
    ++i;
  if (i == 0)
    return 0;
  if (i < text.size() && text[i] == '.') {
    size_t j = i + 1;
    while (j < text.size() && isDigit(text[j]))
      ++j;
    if (j == i + 1)
      return 0; // "5." is a typo, not five
    i = j;
  }
  return i;
}

struct DurationUnit {
  std::string_view suffix;
  uint64_t us;
};

// "ms" before "m", so that "250ms" is not read as minutes followed by junk.
constexpr DurationUnit kDurationUnits[] = {
    {"ms", kUsPerMs}, {"us", 1}, {"h", kUsPerHour}, {"m", kUsPerMinute}, {"s", kUsPerSecond}};

const DurationUnit* matchUnit(std::string_view text) {
  for (const auto& unit : kDurationUnits)
    if (text.substr(0, unit.suffix.size()) == unit.suffix)
      return &unit;
  return nullptr;
}

// Exact decimal arithmetic: "0.1s" is 100,000 us, not 99,999 as a double would give.
// Sub-microsecond fractions round to the nearest microsecond.
std::optional<uint64_t> scaleNumber(std::string_view number, uint64_t unit_us) {
  const size_t dot = number.find('.');
  const std::string_view whole = number.substr(0, dot);
  Wide us = 0;
  for (const char c : whole) {
    us = us * 10 + Wide(c - '0');
    if (us > kMaxUs) // checked per digit, so the Wide never overflows either
      return std::nullopt;
  }
  us *= unit_us;
  if (dot != std::string_view::npos) {
    // 20 digits resolve far below a microsecond even for hours; the rest cannot matter.
    const std::string_view fraction = number.substr(dot + 1, 20);
    Wide numerator = 0;
    Wide denominator = 1;
    for (const char c : fraction) {
      numerator = numerator * 10 + Wide(c - '0');
      denominator *= 10;
    }
    us += (numerator * unit_us + denominator / 2) / denominator;
  }
  if (us > kMaxUs)
    return std::nullopt;
  return uint64_t(us);
}

void appendFraction(std::string& out, uint64_t fraction, int digits) {
  if (fraction == 0)
    return;
  std::string text = std::to_string(fraction);
  text.insert(0, size_t(digits) - text.size(), '0');
  while (text.back() == '0')
    text.pop_back();
  out += '.';
  out += text;
}

} // namespace

std::optional<std::chrono::microseconds> parseDuration(std::string_view text) {
  if (text == "0")
    return std::chrono::microseconds{0};
  if (text.empty())
    return std::nullopt;
  uint64_t total = 0;
  const DurationUnit* previous = nullptr;
  while (!text.empty()) {
    const size_t length = numberLength(text);
    if (length == 0)
      return std::nullopt;
    const std::string_view number = text.substr(0, length);
    text.remove_prefix(length);
    const DurationUnit* unit = matchUnit(text);
    // Each unit at most once and largest first: "1s2m" or "1s1s" are more likely typos.
    if (unit == nullptr || (previous != nullptr && unit->us >= previous->us))
      return std::nullopt;
    text.remove_prefix(unit->suffix.size());
    previous = unit;
    const auto us = scaleNumber(number, unit->us);
    if (!us || *us > kMaxUs - total)
      return std::nullopt;
    total += *us;
  }
  return std::chrono::microseconds{int64_t(total)};
}

std::optional<double> parseRate(std::string_view text) {
  const size_t length = numberLength(text);
  if (length == 0 || length + 2 != text.size() || text[length] != '/')
    return std::nullopt;
  double per_unit = 0.0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + length, per_unit);
  if (error != std::errc{} || end != text.data() + length || !std::isfinite(per_unit))
    return std::nullopt;
  switch (text.back()) {
  case 's':
    return per_unit;
  case 'm':
    return per_unit / 60.0;
  case 'h':
    return per_unit / 3600.0;
  default:
    return std::nullopt;
  }
}

std::string formatDuration(std::chrono::microseconds d) {
  const int64_t count = d.count();
  if (count == 0)
    return "0s";
  std::string out;
  // Magnitude in unsigned, so that the most negative duration does not overflow on negation.
  uint64_t us = uint64_t(count);
  if (count < 0) {
    out += '-';
    us = uint64_t(0) - us;
  }
  const uint64_t hours = us / kUsPerHour;
  const uint64_t minutes = us % kUsPerHour / kUsPerMinute;
  const uint64_t rest = us % kUsPerMinute;
  if (hours > 0)
    out += std::to_string(hours) + 'h';
  if (minutes > 0)
    out += std::to_string(minutes) + 'm';
  if (rest == 0)
    return out;
  // Below a second on its own, the unit that keeps the number short ("250ms", "40us");
  // after hours or minutes, always seconds ("2m0.5s"), which the parser reads back exactly.
  if (hours > 0 || minutes > 0 || rest >= kUsPerSecond) {
    out += std::to_string(rest / kUsPerSecond);
    appendFraction(out, rest % kUsPerSecond, 6);
    out += 's';
  } else if (rest >= kUsPerMs) {
    out += std::to_string(rest / kUsPerMs);
    appendFraction(out, rest % kUsPerMs, 3);
    out += "ms";
  } else {
    out += std::to_string(rest) + "us";
  }
  return out;
}

std::optional<uint64_t> parseByteSize(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && isDigit(text[digits]))
    ++digits;
  if (digits == 0)
    return std::nullopt;
  uint64_t value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc())
    return std::nullopt;
  std::string_view unit = text.substr(digits);
  if (!unit.empty() && unit.front() == ' ')
    unit.remove_prefix(1);
  uint64_t scale = 0;
  if (unit.empty() && digits == text.size())
    scale = 1;
  else if (unit == "KiB")
    scale = uint64_t{1} << 10;
  else if (unit == "MiB")
    scale = uint64_t{1} << 20;
  else if (unit == "GiB")
    scale = uint64_t{1} << 30;
  if (scale == 0 || Wide(value) * scale > std::numeric_limits<uint64_t>::max())
    return std::nullopt;
  return value * scale;
}

} // namespace stampede::common
