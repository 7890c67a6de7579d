#include "worker/send_log.h"

#include <catch2/catch.hpp>

using stampede::worker::SendLog;

TEST_CASE("sends at or after a moment learnt later are counted from the log", "[halt][send_log]") {
  SendLog log(16);
  for (int64_t ns : {100, 200, 300, 300, 400, 500})
    log.record(ns);
  // The moment arrives after the sends (the master's Halt): counted retroactively.
  auto c = log.countFrom(300);
  CHECK(c.sent == 4); // 300, 300, 400, 500: "at or after"
  CHECK(c.last_ns == 500);
  CHECK(c.complete);
  CHECK(log.countFrom(501).sent == 0);
  CHECK(log.countFrom(501).last_ns == 500); // the last send is known whatever the moment
  CHECK(log.countFrom(0).sent == 6);
  CHECK(log.countFrom(0).complete);
}

TEST_CASE("an empty send log has no last send", "[halt][send_log]") {
  SendLog log(4);
  auto c = log.countFrom(0);
  CHECK(c.sent == 0);
  CHECK_FALSE(c.last_ns);
  CHECK(c.complete);
}

TEST_CASE("a send log that overflowed past the moment says its count is a lower bound",
          "[halt][send_log]") {
  SendLog log(4); // holds the last 4 stamps
  for (int64_t ns = 1; ns <= 10; ++ns)
    log.record(ns * 100);
  // 700..1000 held: a moment inside them is counted exactly ...
  auto inside = log.countFrom(850);
  CHECK(inside.sent == 2);
  CHECK(inside.complete);
  // ... one before the oldest held stamp is not: 600 and older were overwritten.
  auto before = log.countFrom(650);
  CHECK(before.sent == 4);
  CHECK_FALSE(before.complete);
  CHECK(before.last_ns == 1000);
}

TEST_CASE("a send log's capacity is rounded up to a power of two", "[halt][send_log]") {
  SendLog log(5); // 8
  for (int64_t ns = 1; ns <= 8; ++ns)
    log.record(ns);
  CHECK(log.countFrom(1).sent == 8);
  CHECK(log.countFrom(1).complete);
  log.record(9);
  CHECK_FALSE(log.countFrom(1).complete);
  CHECK(log.total() == 9);
}
