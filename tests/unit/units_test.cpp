#include "common/config_error.h"
#include "common/units.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using stampede::common::ConfigError;
using stampede::common::formatDuration;
using stampede::common::parseByteSize;
using stampede::common::parseDuration;
using stampede::common::parseRate;

TEST_CASE("parseDuration reads every unit, decimals and compound forms", "[units]") {
  struct Case {
    std::string text;
    std::chrono::microseconds expected;
  };
  const std::vector<Case> cases = {
      {"0", 0us},
      {"0s", 0us},
      {"100us", 100us},
      {"250ms", 250ms},
      {"5s", 5s},
      {"10m", 10min},
      {"2h", 2h},
      {"1.5s", 1500ms},
      {"0.1s", 100ms}, // exact, not 99,999 us as a double would give
      {"0.25ms", 250us},
      {"1.5us", 2us}, // sub-microsecond rounds to nearest
      {"0.0000001h", 360us},
      {"0.0000000001h", 0us},
      {"2m30s", 150s},
      {"1h30m", 90min},
      {"1h0.5s", 1h + 500ms},
      {"1m1s1ms1us", 1min + 1s + 1ms + 1us},
      {"007s", 7s},
      {"2562047788h", 2562047788h}, // the largest whole hour that fits
  };
  for (const auto& c : cases) {
    INFO("parsing \"" << c.text << "\"");
    const auto got = parseDuration(c.text);
    REQUIRE(got.has_value());
    REQUIRE(got->count() == c.expected.count());
  }
}

TEST_CASE("parseDuration rejects negatives, junk, unknown units and overflow", "[units]") {
  const std::vector<std::string> bad = {
      "",
      "-5s",
      "+5s",
      "5",           // no unit
      "1.5",         // no unit
      "00",          // only a bare "0" may go without a unit
      "5x",          // unknown unit
      "5sec",        // trailing junk
      "5 s",         // inner space
      " 5s",         // leading space
      "5s ",         // trailing space
      "s",           // no number
      ".5s",         // no leading digit
      "5.s",         // no fraction digit
      "1.2.3s",      // two dots
      "1e3ms",       // no exponents
      "1s2m",        // compound units out of order
      "1s1s",        // a unit twice
      "5ms30s",      // smaller unit before a larger one
      "5S",          // units are lower case
      "2562047789h", // overflows int64 microseconds
      "99999999999999999999999s",
      "9223372036854775807us1us", // each part fits, the sum does not
  };
  for (const auto& text : bad) {
    INFO("parsing \"" << text << "\"");
    REQUIRE_FALSE(parseDuration(text).has_value());
  }
}

TEST_CASE("parseRate converts per-second, per-minute and per-hour rates", "[units]") {
  struct Case {
    std::string text;
    double per_second;
  };
  const std::vector<Case> cases = {
      {"500/s", 500.0}, {"30/m", 0.5},   {"2/h", 2.0 / 3600.0}, {"1.5/s", 1.5},
      {"0/s", 0.0},     {"7200/h", 2.0}, {"0.5/m", 0.5 / 60.0},
  };
  for (const auto& c : cases) {
    INFO("parsing \"" << c.text << "\"");
    const auto got = parseRate(c.text);
    REQUIRE(got.has_value());
    REQUIRE(*got == Approx(c.per_second));
  }
}

TEST_CASE("parseRate rejects negatives, junk and unknown units", "[units]") {
  const std::vector<std::string> bad = {"",      "500",   "/s",   "-5/s", "+5/s", "5/",
                                        "5/x",   "5/sec", "5/s ", " 5/s", "5 /s", "1e3/s",
                                        "inf/s", "nan/s", ".5/s", "5./s", "5/ms", "5//s"};
  for (const auto& text : bad) {
    INFO("parsing \"" << text << "\"");
    REQUIRE_FALSE(parseRate(text).has_value());
  }
}

TEST_CASE("formatDuration prints compactly in the largest fitting units", "[units]") {
  struct Case {
    std::chrono::microseconds d;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {0us, "0s"},
      {40us, "40us"},
      {250ms, "250ms"},
      {1500us, "1.5ms"},
      {5s, "5s"},
      {1500ms, "1.5s"},
      {150s, "2m30s"},
      {1h, "1h"},
      {90min, "1h30m"},
      {1h + 5s, "1h5s"},
      {2min + 500ms, "2m0.5s"},
      {1001us, "1.001ms"},
      {1000001us, "1.000001s"},
      {-250ms, "-250ms"},
  };
  for (const auto& c : cases) {
    INFO(c.d.count() << " us");
    REQUIRE(formatDuration(c.d) == c.expected);
  }
}

TEST_CASE("formatDuration output parses back to the same duration", "[units]") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<int64_t> any_duration(0, std::numeric_limits<int64_t>::max());
  std::uniform_int_distribution<int64_t> short_duration(0, 10'000'000'000);
  for (int i = 0; i < 10'000; ++i) {
    const std::chrono::microseconds d{i % 2 ? any_duration(rng) : short_duration(rng)};
    const std::string text = formatDuration(d);
    INFO(d.count() << " us printed as " << text);
    const auto back = parseDuration(text);
    REQUIRE(back.has_value());
    REQUIRE(back->count() == d.count());
  }
}

TEST_CASE("parseByteSize reads bytes and binary units, nothing else", "[units]") {
  CHECK(parseByteSize("0") == 0u);
  CHECK(parseByteSize("65536") == 65536u);
  CHECK(parseByteSize("1KiB") == 1024u);
  CHECK(parseByteSize("64MiB") == 64u << 20);
  CHECK(parseByteSize("3 GiB") == uint64_t{3} << 30);
  CHECK(parseByteSize("17179869183GiB") == uint64_t{17179869183} << 30);
  for (const char* bad : {"", "MiB", "1.5MiB", "64MB", "64mib", "-1", "1  KiB", "1KiB ", "64M",
                          "17179869184GiB", "99999999999999999999"}) {
    INFO(bad);
    CHECK_FALSE(parseByteSize(bad));
  }
}

TEST_CASE("config errors read file:line:col: key.path: message", "[config_error]") {
  const ConfigError e("checkout.yaml", 12, 5, "steps[2].request.url", "must start with http");
  REQUIRE(std::string(e.what()) ==
          "checkout.yaml:12:5: steps[2].request.url: must start with http");
  REQUIRE(e.file() == "checkout.yaml");
  REQUIRE(e.line() == 12);
  REQUIRE(e.column() == 5);
  REQUIRE(e.keyPath() == "steps[2].request.url");
  REQUIRE(e.message() == "must start with http");
}

TEST_CASE("config errors about the whole file leave out line and column", "[config_error]") {
  const ConfigError e("checkout.yaml", 0, 0, "load", "is required");
  REQUIRE(std::string(e.what()) == "checkout.yaml: load: is required");
}

TEST_CASE("config errors without a key path leave it out", "[config_error]") {
  const ConfigError e("checkout.yaml", 3, 1, "", "tabs are not allowed");
  REQUIRE(std::string(e.what()) == "checkout.yaml:3:1: tabs are not allowed");
  const ConfigError whole("checkout.yaml", 0, 0, "", "file is empty");
  REQUIRE(std::string(whole.what()) == "checkout.yaml: file is empty");
}

TEST_CASE("config errors are caught as std::runtime_error", "[config_error]") {
  try {
    throw ConfigError("a.yaml", 1, 2, "k", "m");
  } catch (const std::runtime_error& e) {
    REQUIRE(std::string(e.what()) == "a.yaml:1:2: k: m");
    return;
  }
  FAIL("ConfigError was not caught as std::runtime_error");
}
