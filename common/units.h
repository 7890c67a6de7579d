// Parsing and printing of the units users write: durations ("250ms", "5s", "10m", "2h",
// "1.5s") and rates ("500/s", "30/m"). Pure functions, any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace stampede::common {

// A duration with a unit suffix (us, ms, s, m, h); a bare "0" is allowed. Nothing else.
std::optional<std::chrono::microseconds> parseDuration(std::string_view text);
// Per second, from "N/s", "N/m" or "N/h".
std::optional<double> parseRate(std::string_view text);
// "1.5s", "250ms", "2m30s": short and exact enough for humans.
std::string formatDuration(std::chrono::microseconds d);
// A size in bytes: a whole number, alone or with a unit of KiB, MiB or GiB ("64MiB",
// "512 KiB"). Nothing else: no decimals, no sign, no decimal units (KB, MB).
std::optional<uint64_t> parseByteSize(std::string_view text);

} // namespace stampede::common
