#include "master/hosts_file.h"

#include "common/config_error.h"

#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using stampede::common::ConfigError;
using stampede::master::parseHostsFile;
using stampede::master::parseHostsText;
using stampede::master::WorkerAddress;

namespace {

// 40 Z85 characters, including a '#' that must not start a comment.
const std::string kKey = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf#";
const std::string kOtherKey = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID";

std::vector<WorkerAddress> parse(const std::string& text) {
  return parseHostsText(text, "hosts.txt");
}

// A scratch file removed at scope exit.
struct TempFile {
  std::filesystem::path path;
  explicit TempFile(const std::string& text)
      : path(std::filesystem::temp_directory_path() /
             ("stampede_hosts_" + std::to_string(::getpid()) + ".txt")) {
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove(path); }
};

} // namespace

TEST_CASE("a host without a port gets port 7700 and weight 1", "[hosts]") {
  const auto workers = parse("load1.example.com\n");
  REQUIRE(workers.size() == 1);
  REQUIRE(workers[0].host == "load1.example.com");
  REQUIRE(workers[0].port == 7700);
  REQUIRE(workers[0].weight == 1.0);
  REQUIRE(workers[0].key.empty());
  REQUIRE(workers[0].line == 1);
  REQUIRE(workers[0].endpoint() == "tcp://load1.example.com:7700");
}

TEST_CASE("ports, weights, keys, comments and blank lines", "[hosts]") {
  const auto workers = parse("# the load fleet\n"
                             "\n"
                             "10.0.0.1:7701 weight=2.5   # the big one\n"
                             "   \t\n"
                             "10.0.0.2:7701\tkey=" +
                             kKey + " weight=0.5\n" +                    // options in any order
                             "10.0.0.1:7702 key=" + kOtherKey + "\r\n" + // CRLF
                             "worker_3.internal weight=3 # a trailing comment\n"
                             "#10.0.0.9 commented out");
  REQUIRE(workers.size() == 4);
  REQUIRE(workers[0].host == "10.0.0.1");
  REQUIRE(workers[0].port == 7701);
  REQUIRE(workers[0].weight == 2.5);
  REQUIRE(workers[0].line == 3);
  REQUIRE(workers[1].host == "10.0.0.2");
  REQUIRE(workers[1].weight == 0.5);
  REQUIRE(workers[1].key == kKey);
  REQUIRE(workers[1].line == 5);
  REQUIRE(workers[2].port == 7702); // same host, another port: another worker
  REQUIRE(workers[2].key == kOtherKey);
  REQUIRE(workers[2].weight == 1.0);
  REQUIRE(workers[2].line == 6);
  REQUIRE(workers[3].host == "worker_3.internal");
  REQUIRE(workers[3].weight == 3.0);
  REQUIRE(workers[3].line == 7);
}

TEST_CASE("a '#' inside a token is not a comment", "[hosts]") {
  // weight=3#x is not a number, which proves the '#' did not cut the line there.
  REQUIRE_THROWS_WITH(parse("w weight=3#x\n"),
                      "hosts.txt:1:3: weight must be a number > 0, got \"3#x\"");
}

TEST_CASE("IPv6 addresses in brackets, with and without a port", "[hosts]") {
  const auto workers = parse("[::1]:7702\n"
                             "[2001:db8::10]\n"
                             "[fe80::1%eth0]:7800 weight=2\n");
  REQUIRE(workers.size() == 3);
  REQUIRE(workers[0].host == "::1");
  REQUIRE(workers[0].port == 7702);
  REQUIRE(workers[0].endpoint() == "tcp://[::1]:7702");
  REQUIRE(workers[1].host == "2001:db8::10");
  REQUIRE(workers[1].port == 7700);
  REQUIRE(workers[1].endpoint() == "tcp://[2001:db8::10]:7700");
  REQUIRE(workers[2].host == "fe80::1%eth0");
  REQUIRE(workers[2].weight == 2.0);
}

TEST_CASE("bad lines are refused with file:line:col and the reason", "[hosts]") {
  const std::string ok = "good.example\n"; // every bad line below is line 2
  const auto refuses = [&](const std::string& line, const std::string& message) {
    INFO("line: " << line);
    REQUIRE_THROWS_WITH(parse(ok + line + "\n"), "hosts.txt:" + message);
  };
  refuses("localhost weight=x", "2:11: weight must be a number > 0, got \"x\"");
  refuses("a weight=0", "2:3: weight must be a number > 0, got \"0\"");
  refuses("a  weight=-1", "2:4: weight must be a number > 0, got \"-1\"");
  refuses("a weight=inf", "2:3: weight must be a number > 0, got \"inf\"");
  refuses("a weight=nan", "2:3: weight must be a number > 0, got \"nan\"");
  refuses("a weight=", "2:3: weight must be a number > 0, got \"\"");
  refuses("a weight=1e999", "2:3: weight must be a number > 0, got \"1e999\"");
  refuses("a weight=2 weight=3", "2:12: weight given twice on one line");
  refuses("a color=red", "2:3: unknown option \"color\" (expected weight= or key=)");
  refuses("a fast",
          "2:3: unexpected \"fast\" (after the address: weight=N or key=<Z85 public key>)");
  refuses("a:0", "2:1: port must be a number from 1 to 65535, got \"0\"");
  refuses("a:65536", "2:1: port must be a number from 1 to 65535, got \"65536\"");
  refuses("  a:http", "2:3: port must be a number from 1 to 65535, got \"http\"");
  refuses("a:-1", "2:1: port must be a number from 1 to 65535, got \"-1\"");
  refuses("a:", "2:1: port must be a number from 1 to 65535, got \"\"");
  refuses(":7700", "2:1: empty host in \":7700\"");
  refuses("[]:7700", "2:1: empty host in \"[]:7700\"");
  refuses("::1", "2:1: an IPv6 address needs brackets, e.g. [::1]:7700");
  refuses("[::1:7700", "2:1: missing ']' after IPv6 address \"[::1:7700\"");
  refuses("[::1]7700", "2:1: expected \":port\" after ']' in \"[::1]7700\"");
  refuses("[::g]", "2:1: \"::g\" is not an IPv6 address");
  refuses("[fe80::1%]", "2:1: bad IPv6 zone \"\" in \"fe80::1%\"");
  refuses("a/b", "2:1: host \"a/b\" contains '/' (letters, digits, '.', '-', '_' only)");
  refuses("weight=2", "2:1: expected host[:port] before the options, got \"weight=2\"");
  refuses("a key=short", "2:3: key must be 40 Z85 characters (a CURVE public key), got 5");
  refuses("a key=" + kKey.substr(0, 39) + "~", "2:3: key contains '~', not a Z85 character");
  refuses("a key=" + kKey + " key=" + kKey, "2:48: key given twice on one line");
}

TEST_CASE("a worker listed twice names the earlier line", "[hosts]") {
  // Host names are case-insensitive, and 7700 is the default port.
  REQUIRE_THROWS_WITH(parse("Load1:7700\n# spare\n  load1\n"),
                      "hosts.txt:3:3: worker load1:7700 is listed twice (first on line 1)");
  // Two spellings of one IPv6 address.
  REQUIRE_THROWS_WITH(parse("[::1]\n[0:0::1]:7700 weight=2\n"),
                      "hosts.txt:2:1: worker [0:0::1]:7700 is listed twice (first on line 1)");
}

TEST_CASE("a hosts file without workers is refused", "[hosts]") {
  REQUIRE_THROWS_WITH(parse(""), "hosts.txt: no workers listed (one host[:port] per line)");
  REQUIRE_THROWS_WITH(parse("# nobody yet\n\n   \n"),
                      "hosts.txt: no workers listed (one host[:port] per line)");
}

TEST_CASE("parseHostsFile reads a file and names it in errors", "[hosts]") {
  {
    TempFile file("a:7701\nb:7702 weight=2\n");
    const auto workers = parseHostsFile(file.path.string());
    REQUIRE(workers.size() == 2);
    REQUIRE(workers[1].endpoint() == "tcp://b:7702");
  }
  {
    TempFile file("a\nb:0\n");
    REQUIRE_THROWS_WITH(parseHostsFile(file.path.string()),
                        file.path.string() +
                            ":2:1: port must be a number from 1 to 65535, got \"0\"");
  }
}

TEST_CASE("a missing or unreadable hosts file is a ConfigError", "[hosts]") {
  REQUIRE_THROWS_WITH(parseHostsFile("/nonexistent/hosts.txt"),
                      "/nonexistent/hosts.txt: cannot read hosts file: No such file or directory");
  const std::string dir = std::filesystem::temp_directory_path().string();
  REQUIRE_THROWS_AS(parseHostsFile(dir), ConfigError);
}
