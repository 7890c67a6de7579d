#include "master/console.h"

#include <catch2/catch.hpp>

using stampede::master::printable;

TEST_CASE("printable escapes what a terminal would act on and keeps the rest", "[console]") {
  CHECK(printable("plain name") == "plain name");
  CHECK(printable("caf\xc3\xa9 \xe2\x9c\x93") == "caf\xc3\xa9 \xe2\x9c\x93"); // UTF-8 stays
  CHECK(printable("\x1b]0;owned\x07") == "\\x1b]0;owned\\x07");               // set window title
  CHECK(printable("a\nb\tc\rd\x7f") == "a\\nb\\tc\\rd\\x7f");
  CHECK(printable(std::string("nul\0here", 8)) == "nul\\x00here");
  CHECK(printable("\xc2\x9b"
                  "2J") == "\\u009b2J"); // C1 CSI, as UTF-8
  CHECK(printable("\x9b"
                  "2J") == "\\x9b2J"); // a lone 8-bit CSI is not UTF-8
  CHECK(printable("\xc3") == "\\xc3"); // a cut-off sequence
  CHECK(printable("line 1\n\tline 2\x1b[2J", true) == "line 1\n\tline 2\\x1b[2J");
}
