#include "common/config_error.h"
#include "common/files.h"
#include "common/scenario.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <time.h>
#include <unistd.h>

#ifndef STAMPEDE_SOURCE_DIR
#error "STAMPEDE_SOURCE_DIR must name the repository root (CMake defines it)"
#endif

using namespace stampede::common;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const fs::path kSourceDir = STAMPEDE_SOURCE_DIR;

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// A minimal valid scenario around the given flows block, for tests of one feature.
std::string withFlows(const std::string& flows, const std::string& extra = "") {
  return "name: t\n"
         "target: http://127.0.0.1:8080/api/\n"
         "load: {users: 2, duration: 3s}\n" +
         extra + "flows:\n" + flows;
}

std::string render(const Template& t, bool mask = false) {
  std::mt19937_64 rng{1};
  return t.render(RenderContext{1, 0, 0, &rng}, mask);
}

const Template* header(const Step& step, const std::string& name) {
  for (const auto& [n, v] : step.headers)
    if (n == name)
      return &v;
  return nullptr;
}

ConfigError loadError(const std::string& yaml) {
  try {
    loadScenarioText(yaml, "inline.yaml");
  } catch (const ConfigError& e) {
    return e;
  }
  FAIL("expected a ConfigError for:\n" << yaml);
  throw std::logic_error("unreachable");
}

// "# expect: LINE:COL: key.path: message-substring" on the first line of a bad scenario.
struct Expectation {
  int line = -1;
  int column = -1;
  std::string key_path;
  std::string message;
};

Expectation parseExpectation(const std::string& first_line) {
  const std::string prefix = "# expect: ";
  REQUIRE(first_line.rfind(prefix, 0) == 0);
  std::string rest = first_line.substr(prefix.size());
  Expectation e;
  const size_t colon1 = rest.find(':');
  const size_t colon2 = rest.find(':', colon1 + 1);
  REQUIRE(colon2 != std::string::npos);
  e.line = std::stoi(rest.substr(0, colon1));
  e.column = std::stoi(rest.substr(colon1 + 1, colon2 - colon1 - 1));
  rest = rest.substr(colon2 + 2); // ": "
  const size_t sep = rest.find(": ");
  REQUIRE(sep != std::string::npos);
  e.key_path = rest.substr(0, sep);
  e.message = rest.substr(sep + 2);
  return e;
}

} // namespace

TEST_CASE("every example scenario in config/examples loads", "[scenario]") {
  int loaded = 0;
  for (const auto& entry : fs::directory_iterator(kSourceDir / "config" / "examples")) {
    const auto ext = entry.path().extension();
    if (ext != ".yaml" && ext != ".yml")
      continue;
    INFO(entry.path().string());
    try {
      const Scenario s = loadScenarioFile(entry.path().string());
      CHECK_FALSE(s.flows.empty());
    } catch (const ConfigError& e) {
      FAIL(e.what());
    }
    ++loaded;
  }
  CHECK(loaded >= 2);
}

TEST_CASE("every bad scenario is refused at the expected line, column and key", "[scenario][bad]") {
  // The secret-reading scenario relies on this variable being absent.
  ::unsetenv("STAMPEDE_TEST_SURELY_UNSET");
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(kSourceDir / "tests" / "unit" / "bad_scenarios"))
    if (entry.path().extension() == ".yaml")
      files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  REQUIRE(files.size() >= 25);

  for (const auto& file : files) {
    const std::string text = readFile(file);
    const Expectation want = parseExpectation(text.substr(0, text.find('\n')));
    INFO(file.filename().string());
    try {
      loadScenarioFile(file.string());
      FAIL_CHECK("loaded without error");
    } catch (const ConfigError& e) {
      INFO(e.what());
      CHECK(e.file() == file.string());
      CHECK(e.line() == want.line);
      CHECK(e.column() == want.column);
      CHECK(e.keyPath() == want.key_path);
      CHECK_THAT(e.message(), Catch::Contains(want.message));
    }
  }
}

TEST_CASE("a full scenario loads into the model", "[scenario]") {
  const std::string yaml = R"(name: shop
target: https://shop.example:8443/api/
load:
  users: 200
  ramp: 20s
  duration: 10m
halt:
  on_error: never
http:
  timeout: 2500ms
  engine: curl
  keep_alive: false
  headers: {Accept: application/json, X-Region: "{{region}}"}
variables:
  region: eu-west
flows:
  - name: browse
    weight: 3
    think: 100ms..500ms
    steps:
      - get: /products?region={{region}}
        name: list products
        expect: {status: 200}
      - get: /products/{{random_int(1, 1000)}}
      - think: 1s
  - weight: 0.5
    think: 250ms
    steps:
      - delete: http://other.example/cart/{{vu}}
        expect:
          status: [200, 204]
      - loop: 3
        steps:
          - put: /cart
            body: 'sku=42'
            headers: {Content-Type: application/x-www-form-urlencoded}
)";
  const Scenario s = loadScenarioText(yaml, "shop.yaml");
  CHECK(s.file == "shop.yaml");
  CHECK(s.source_text == yaml);
  CHECK(s.name == "shop");
  CHECK(s.target.scheme == "https");
  CHECK(s.target.tls());
  CHECK(s.target.host == "shop.example");
  CHECK(s.target.port == 8443);
  CHECK(s.target.base_path == "/api");

  CHECK(s.load.users == 200);
  CHECK(s.load.ramp == 20s);
  CHECK(s.load.duration == 10min);
  CHECK(s.halt.on_error == HaltSpec::OnError::Never);
  CHECK(s.http.timeout == 2500ms);
  CHECK(s.http.engine == HttpSpec::Engine::Curl);
  CHECK_FALSE(s.http.keep_alive);
  using Header = std::pair<std::string, std::string>;
  CHECK(s.http.headers ==
        std::vector<Header>{{"Accept", "application/json"}, {"X-Region", "eu-west"}});
  CHECK(s.variables == std::map<std::string, std::string>{{"region", "eu-west"}});

  REQUIRE(s.flows.size() == 2);
  const Flow& browse = s.flows[0];
  CHECK(browse.name == "browse");
  CHECK(browse.weight == 3.0);
  CHECK(browse.think.kind == ThinkTime::Kind::Uniform);
  CHECK(browse.think.a == 100ms);
  CHECK(browse.think.b == 500ms);
  REQUIRE(browse.steps.size() == 3);

  const Step& list = browse.steps[0];
  CHECK(list.kind == Step::Kind::Request);
  CHECK(list.method == "GET");
  CHECK(list.url.source() == "/products?region={{region}}");
  CHECK(list.url.isConstant());
  CHECK(render(list.url) == "/products?region=eu-west");
  CHECK_FALSE(list.url_absolute);
  CHECK(list.expect.status == std::vector<int>{200});
  CHECK(list.where.line == 21);
  CHECK(list.where.column == 9);

  const Step& product = browse.steps[1];
  CHECK_FALSE(product.url.isConstant());
  CHECK(product.expect.status.empty());

  CHECK(browse.steps[2].kind == Step::Kind::Think);
  CHECK(browse.steps[2].think.kind == ThinkTime::Kind::Fixed);
  CHECK(browse.steps[2].think.a == 1s);

  const Flow& second = s.flows[1];
  CHECK(second.name == "flow 2");
  CHECK(second.weight == 0.5);
  CHECK(second.think.kind == ThinkTime::Kind::Fixed);
  CHECK(second.think.a == 250ms);
  const Step& del = second.steps[0];
  CHECK(del.method == "DELETE");
  CHECK(del.url_absolute);
  CHECK(del.expect.status == std::vector<int>{200, 204});
  const Step& loop = second.steps[1];
  CHECK(loop.kind == Step::Kind::Loop);
  CHECK(loop.loop_count == 3);
  REQUIRE(loop.steps.size() == 1);
  const Step& put = loop.steps[0];
  CHECK(put.method == "PUT");
  REQUIRE(put.body);
  CHECK(render(*put.body) == "sku=42");
  REQUIRE(header(put, "Content-Type"));
  CHECK(render(*header(put, "Content-Type")) == "application/x-www-form-urlencoded");

  // One stats row per distinct key, in the order first met.
  REQUIRE(s.step_table.size() == 4);
  CHECK(s.step_table[0].name == "list products");
  CHECK(s.step_table[1].name == "GET /products/{{random_int(1, 1000)}}");
  CHECK(s.step_table[2].name == "DELETE http://other.example/cart/{{vu}}");
  CHECK(s.step_table[2].method == "DELETE");
  CHECK(s.step_table[3].name == "PUT /cart");
  CHECK(list.stats_index == 0);
  CHECK(product.stats_index == 1);
  CHECK(del.stats_index == 2);
  CHECK(put.stats_index == 3);
}

TEST_CASE("defaults apply when optional keys are left out", "[scenario]") {
  const Scenario s = loadScenarioText(withFlows("  - steps: [{get: /}]\n"), "d.yaml");
  CHECK(s.load.ramp == 0us);
  CHECK(s.halt.on_error == HaltSpec::OnError::First);
  CHECK(s.http.engine == HttpSpec::Engine::Beast);
  CHECK(s.http.timeout == 5s);
  CHECK(s.http.keep_alive);
  CHECK(s.http.headers.empty());
  REQUIRE(s.flows.size() == 1);
  CHECK(s.flows[0].name == "flow 1");
  CHECK(s.flows[0].weight == 1.0);
  CHECK(s.flows[0].think.kind == ThinkTime::Kind::None);
  CHECK(s.flows[0].steps[0].headers.empty());
  CHECK_FALSE(s.flows[0].steps[0].body);
}

TEST_CASE("steps with the same stats key share one row", "[scenario]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - name: a
    steps:
      - get: /x
      - get: /y
        name: why
  - name: b
    steps:
      - get: /x
      - loop: 2
        steps:
          - get: /z
            name: why
)"),
                                      "k.yaml");
  REQUIRE(s.step_table.size() == 2);
  CHECK(s.step_table[0].name == "GET /x");
  CHECK(s.step_table[1].name == "why");
  CHECK(s.flows[0].steps[0].stats_index == 0);
  CHECK(s.flows[0].steps[1].stats_index == 1);
  CHECK(s.flows[1].steps[0].stats_index == 0);
  CHECK(s.flows[1].steps[1].steps[0].stats_index == 1);
}

TEST_CASE("json bodies become compact JSON templates with a Content-Type", "[scenario][json]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - steps:
      - post: /orders
        json:
          id: "{{vu}}"
          qty: 2
          price: 9.5
          gift: false
          note: ~
          sku: "42"
          tags: [a, "b c"]
          nested: {deep: {x: 1}}
)"),
                                      "j.yaml");
  const Step& post = s.flows[0].steps[0];
  REQUIRE(post.body);
  CHECK(
      post.body->source() ==
      R"({"id":"{{vu}}","qty":2,"price":9.5,"gift":false,"note":null,"sku":"42","tags":["a","b c"],"nested":{"deep":{"x":1}}})");
  CHECK(
      render(*post.body) ==
      R"({"id":"1","qty":2,"price":9.5,"gift":false,"note":null,"sku":"42","tags":["a","b c"],"nested":{"deep":{"x":1}}})");
  REQUIRE(header(post, "Content-Type"));
  CHECK(render(*header(post, "Content-Type")) == "application/json");
}

TEST_CASE("a Content-Type the user sets wins over json's default", "[scenario][json]") {
  const Scenario in_step = loadScenarioText(withFlows(R"(  - steps:
      - post: /orders
        headers: {content-type: application/vnd.api+json}
        json: [1, 2]
)"),
                                            "j.yaml");
  const Step& a = in_step.flows[0].steps[0];
  CHECK(a.headers.size() == 1);
  CHECK(render(*a.body) == "[1,2]");

  const Scenario in_http =
      loadScenarioText(withFlows("  - steps: [{post: /o, json: {a: 1}}]\n",
                                 "http: {headers: {Content-Type: application/merge-patch+json}}\n"),
                       "j.yaml");
  CHECK(in_http.flows[0].steps[0].headers.empty());
}

TEST_CASE("secrets from env() stay per request and are masked", "[scenario][secret]") {
  ::setenv("STAMPEDE_TEST_API_TOKEN", "tok-123", 1);
  const Scenario s = loadScenarioText(withFlows(R"(  - steps:
      - get: /a
      - get: /b
        headers: {authorization: "Basic {{env('STAMPEDE_TEST_API_TOKEN')}}"}
)",
                                                "http:\n  headers:\n    Authorization: \"Bearer "
                                                "{{env(\\\"STAMPEDE_TEST_API_TOKEN\\\")}}\"\n"
                                                "    Accept: text/plain\n"),
                                      "s.yaml");
  ::unsetenv("STAMPEDE_TEST_API_TOKEN");
  // A secret cannot live in HttpSpec's plain strings, so it is carried by every request step.
  CHECK(s.http.headers ==
        std::vector<std::pair<std::string, std::string>>{{"Accept", "text/plain"}});
  const Step& a = s.flows[0].steps[0];
  REQUIRE(header(a, "Authorization"));
  CHECK(render(*header(a, "Authorization")) == "Bearer tok-123");
  CHECK(render(*header(a, "Authorization"), true) == "Bearer ***");
  // The step's own header (any case) takes precedence over the pushed-down default.
  const Step& b = s.flows[0].steps[1];
  CHECK(b.headers.size() == 1);
  CHECK(render(*header(b, "authorization"), true) == "Basic ***");
}

TEST_CASE("errors carry file, line, column and key path in one line", "[scenario]") {
  const ConfigError e =
      loadError("name: t\ntarget: http://h\nload:\n  users: many\n  duration: 1s\n"
                "flows: [{steps: [{get: /}]}]\n");
  CHECK(e.file() == "inline.yaml");
  CHECK(e.line() == 4);
  CHECK(e.column() == 10);
  CHECK(e.keyPath() == "load.users");
  CHECK(std::string(e.what()) == "inline.yaml:4:10: load.users: expected an integer, got \"many\"");
}

TEST_CASE("a template error points at the byte within a plain scalar", "[scenario]") {
  const ConfigError e = loadError(withFlows("  - steps:\n      - get: /a/{{ nope }}/b\n"));
  CHECK(e.line() == 6);
  CHECK(e.column() == 20); // the 'n' of nope
  CHECK(e.keyPath() == "flows[0].steps[0].get");
}

TEST_CASE("a missing file is reported with the OS reason", "[scenario]") {
  const std::string path = "/nonexistent/stampede/none.yaml";
  try {
    loadScenarioFile(path);
    FAIL("loaded a missing file");
  } catch (const ConfigError& e) {
    CHECK(e.file() == path);
    CHECK(e.line() == 0);
    CHECK(e.column() == 0);
    CHECK(e.keyPath().empty());
    CHECK(e.message() == "cannot read file: No such file or directory");
  }
}

TEST_CASE("a directory is not a scenario file", "[scenario]") {
  try {
    loadScenarioFile(kSourceDir.string());
    FAIL("loaded a directory");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.message(), Catch::StartsWith("cannot read file: "));
  }
}

TEST_CASE("a device, a pipe past the limit and an oversized file are refused at once",
          "[scenario][limits]") {
  try {
    loadScenarioFile("/dev/zero");
    FAIL("loaded /dev/zero");
  } catch (const ConfigError& e) {
    CHECK(e.message() == "cannot read file: a device or a socket, not a file");
  }
  const fs::path big = fs::temp_directory_path() / ("stampede-big-" + std::to_string(::getpid()));
  {
    std::ofstream out(big, std::ios::binary);
    out << "name: big\n# " << std::string(kMaxScenarioBytes, 'x') << "\n";
  }
  try {
    loadScenarioFile(big.string());
    FAIL("loaded a file over the limit");
  } catch (const ConfigError& e) {
    CHECK(e.message() == "cannot read file: 16.0 MiB, over the 16 MiB limit for a scenario file");
  }
  fs::remove(big);
}

TEST_CASE("control characters are refused where they are, but UTF-16 text is not",
          "[scenario][limits]") {
  const ConfigError e = loadError(withFlows("  - steps: [{get: /a}]\n  - name: \"x\x1b\"\n"));
  CHECK(e.line() == 6);
  CHECK(e.column() == 13);
  CHECK_THAT(e.message(), Catch::StartsWith("control character 0x1B in the text"));
  // yaml-cpp reads UTF-16 by its byte order mark: every other byte is a NUL.
  std::string utf16 = "\xFF\xFE";
  for (char c : withFlows("  - steps: [{get: /a}]\n")) {
    utf16 += c;
    utf16 += '\0';
  }
  CHECK(loadScenarioText(utf16, "utf16.yaml").flows.size() == 1);
}

TEST_CASE("aliases in moderation expand; json bodies keep order and refuse duplicates",
          "[scenario][json][limits]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - steps:
      - post: /a
        json: {item: &item {sku: 1, qty: 2}, again: *item, list: [*item, *item]}
)"),
                                      "alias.yaml");
  CHECK(
      s.flows[0].steps[0].body->source() ==
      R"({"item":{"sku":1,"qty":2},"again":{"sku":1,"qty":2},"list":[{"sku":1,"qty":2},{"sku":1,"qty":2}]})");

  // Ten aliases of ten thousand scalars: exactly at the limit, then one node over it.
  auto tenAliases = [](size_t items) {
    std::string yaml = "      - post: /b\n        json:\n          base: &base [";
    for (size_t i = 0; i < items; ++i)
      yaml += i ? ",1" : "1";
    yaml += "]\n          copies: [*base, *base, *base, *base, *base, *base, *base, *base, *base, "
            "*base]\n";
    return yaml;
  };
  // Each alias repeats the list node and its items.
  CHECK_NOTHROW(loadScenarioText(withFlows("  - steps:\n" + tenAliases(kMaxAliasNodes / 10 - 1)),
                                 "at-limit.yaml"));
  const ConfigError e = loadError(withFlows("  - steps:\n" + tenAliases(kMaxAliasNodes / 10)));
  CHECK(e.line() == 9);
  CHECK_THAT(e.message(), Catch::StartsWith("aliases repeat more than 100000 nodes in all"));

  // Few nodes, much text: seventeen aliases of a 1 MiB string.
  const std::string megabyte(1 << 20, 'x');
  std::string yaml =
      "      - post: /c\n        json:\n          a: &a " + megabyte + "\n          b: [*a";
  for (int i = 1; i < 17; ++i)
    yaml += ", *a";
  const ConfigError text = loadError(withFlows("  - steps:\n" + yaml + "]\n"));
  CHECK(text.line() == 9);
  CHECK(text.column() == 79); // the 17th alias
  CHECK_THAT(text.message(), Catch::StartsWith("aliases repeat more than 16 MiB of text in all"));
}

namespace {

// CPU time of this thread, not wall time: a loaded machine stretches every load alike.
double cpuSecondsToLoad(const std::string& yaml) {
  timespec before{}, after{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &before);
  const Scenario s = loadScenarioText(yaml, "many.yaml");
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &after);
  REQUIRE_FALSE(s.flows.empty());
  return double(after.tv_sec - before.tv_sec) + double(after.tv_nsec - before.tv_nsec) / 1e9;
}

} // namespace

TEST_CASE("loading is linear in the keys of one mapping", "[scenario][limits][scale]") {
  auto manyKeys = [](size_t n) {
    std::string yaml = withFlows("  - steps:\n      - post: /\n");
    for (const char* key : {"query", "headers", "json"}) {
      yaml += std::string("        ") + key + ": {";
      for (size_t i = 0; i < n; ++i)
        yaml += (i ? ", " : "") + std::string(1, key[0]) + std::to_string(i) + ": 1";
      yaml += "}\n";
    }
    return yaml;
  };
  const double small = cpuSecondsToLoad(manyKeys(5000));
  const double large = cpuSecondsToLoad(manyKeys(40000));
  INFO("5k keys: " << small << " s CPU, 40k keys: " << large << " s CPU");
  // Eight times the keys: about 8.5 times the time when linear. The pairwise duplicate checks
  // (and JSON objects that look keys up one by one) made it about 28 times at 20k keys.
  CHECK(large < 18 * small);
}

TEST_CASE("loading is linear in the number of flows", "[scenario][limits][scale]") {
  auto manyFlows = [](size_t n) {
    std::string yaml = "name: many\ntarget: http://127.0.0.1:8080\n"
                       "load: {users: 1, duration: 1s}\nflows:\n";
    for (size_t i = 0; i < n; ++i)
      yaml += "  - {name: f" + std::to_string(i) + ", steps: [{get: /}]}\n";
    return yaml;
  };
  const double small = cpuSecondsToLoad(manyFlows(10000));
  const double large = cpuSecondsToLoad(manyFlows(80000));
  INFO("10k flows: " << small << " s CPU, 80k flows: " << large << " s CPU");
  // Eight times the flows: about 9 times the time when linear (2 s for 80k flows). The
  // pairwise check of flow names made it 47 times (14.5 s).
  CHECK(large < 18 * small);
}

TEST_CASE("every prefix of a valid scenario loads or fails with a ConfigError", "[scenario]") {
  // Truncation exercises every half-written construct; nothing but ConfigError may escape.
  for (const char* name :
       {"demo.yaml", "open-model.yaml", "stages.yaml", "login-flow.yaml", "feeder.yaml"}) {
    const fs::path path = kSourceDir / "config" / "examples" / name;
    const std::string text = readFile(path);
    REQUIRE_FALSE(text.empty());
    for (size_t n = 0; n <= text.size(); ++n) {
      try {
        loadScenarioText(text.substr(0, n), path.string());
      } catch (const ConfigError&) {
      } catch (const std::exception& e) {
        FAIL(name << ": prefix of " << n << " bytes threw " << e.what());
      }
    }
  }
}

TEST_CASE("parseEndpoint accepts base URLs and refuses everything else", "[scenario][url]") {
  auto e = parseEndpoint("http://127.0.0.1:18080");
  REQUIRE(e);
  CHECK(e->scheme == "http");
  CHECK(e->host == "127.0.0.1");
  CHECK(e->port == 18080);
  CHECK(e->base_path.empty());
  CHECK_FALSE(e->tls());

  e = parseEndpoint("HTTPS://Example.com/api/v1//");
  REQUIRE(e);
  CHECK(e->scheme == "https");
  CHECK(e->port == 443);
  CHECK(e->base_path == "/api/v1");
  CHECK(e->tls());

  e = parseEndpoint("http://[::1]:8080/x");
  REQUIRE(e);
  CHECK(e->host == "::1");
  CHECK(e->port == 8080);

  CHECK(parseEndpoint("http://localhost")->port == 80);
  CHECK(parseEndpoint("http://localhost/")->base_path.empty());

  for (const char* bad :
       {"", "localhost:80", "ftp://h", "http://", "http://:80", "http://h:", "http://h:0",
        "http://h:65536", "http://h:8o", "http://u:p@h", "http://h/a?b=1", "http://h#x",
        "http://h/a b", "http://[::1", "http://[::1]x", "http://h h"}) {
    INFO(bad);
    CHECK_FALSE(parseEndpoint(bad));
  }
}

TEST_CASE("Expect allows listed statuses, or below 400 when none are listed", "[scenario]") {
  Expect any;
  CHECK(any.allows(200));
  CHECK(any.allows(302));
  CHECK_FALSE(any.allows(404));
  CHECK_FALSE(any.allows(500));
  Expect listed;
  listed.status = {201, 404};
  CHECK(listed.allows(404));
  CHECK(listed.allows(201));
  CHECK_FALSE(listed.allows(200));
}

// ---------------------------------------------------------------------------------------------
// The whole language

namespace {

// A directory of its own under the system's temp dir, removed with everything in it.
class TempDir {
public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() / ("stampede-scenario-test-" + std::to_string(::getpid()) +
                                         "-" + std::to_string(++counter));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    const fs::path file = path_ / name;
    std::ofstream out(file, std::ios::binary);
    out << text;
    return file;
  }
  const fs::path& path() const { return path_; }

private:
  fs::path path_;
};

ConfigError loadErrorWith(const std::string& yaml, const LoadOptions& options) {
  try {
    loadScenarioText(yaml, "inline.yaml", options);
  } catch (const ConfigError& e) {
    return e;
  }
  FAIL("expected a ConfigError for:\n" << yaml);
  throw std::logic_error("unreachable");
}

// Renders with the given slot values (a virtual user's captured values and data columns).
std::string renderWith(const Template& t, const std::vector<std::string>& slots) {
  std::mt19937_64 rng{1};
  RenderContext ctx{1, 0, 0, &rng};
  ctx.slots = slots.data();
  return t.render(ctx);
}

const std::string kPem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const std::string kKeyPem = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";
const std::string kAccountsCsv = "user,password\nalice,pw1\n\"bob, jr\",\"say \"\"hi\"\"\"\n";

// SCENARIO.md's example, whole, with its data and TLS files next to it. One change: YAML does
// not allow '[' in a plain scalar inside {...}, so the JSON path key is quoted.
const std::string kContractExample = R"(name: checkout-soak
target: http://127.0.0.1:8080
load:
  users: 200
  ramp: 20s
  duration: 10m
halt:
  on_error: first
  on_worker_lost: halt
  thresholds:
    - p99 < 250ms
    - error_rate < 0.5%
    - expr: "p95{step: list products} < 400ms"
      window: 1m
      abort: true
http:
  timeout: 5s
  version: "1.1"
  headers: {Accept: application/json}
  keep_alive: true
  follow_redirects: false
  tls: {verify: true, ca: ca.pem, cert: client.pem, key: client.key}
variables:
  region: eu-west
data:
  accounts:
    csv: accounts.csv
    order: sequence
    split: per_worker
    on_exhausted: wrap
flows:
  - name: browse
    weight: 3
    think: 100ms..500ms
    steps:
      - get: /products?region={{region}}
        name: list products
        expect: {status: 200}
      - get: /products/{{random_int(1, 1000)}}
        name: product
  - name: checkout
    weight: 1
    steps:
      - post: /login
        json: {user: "{{accounts.user}}", password: "{{accounts.password}}"}
        capture:
          token: {json: $.token}
      - post: /cart
        headers: {Authorization: "Bearer {{token}}"}
        body: '{"sku": 42}'
        expect:
          status: [200, 201]
          body_contains: '"ok"'
          json: {"$.items[0].sku": 42}
          max_latency: 500ms
      - think: 1s
      - loop: 3
        steps:
          - get: /cart
)";

} // namespace

TEST_CASE("SCENARIO.md's example loads into the model, files and all", "[scenario][contract]") {
  TempDir dir;
  dir.write("accounts.csv", kAccountsCsv);
  dir.write("ca.pem", kPem);
  dir.write("client.pem", kPem);
  dir.write("client.key", kKeyPem);
  const fs::path file = dir.write("checkout.yaml", kContractExample);
  const Scenario s = loadScenarioFile(file.string());

  // Closed model, with the stages the engine reads filled in.
  CHECK(s.load.model == LoadSpec::Model::Closed);
  CHECK(s.load.users == 200);
  CHECK(s.load.ramp == 20s);
  CHECK(s.load.duration == 10min);
  CHECK_FALSE(s.load.stages_written);
  REQUIRE(s.load.stages.size() == 2);
  CHECK_FALSE(s.load.stages[0].hold);
  CHECK(s.load.stages[0].to == 200);
  CHECK(s.load.stages[0].over == 20s);
  CHECK(s.load.stages[1].hold);
  CHECK(s.load.stages[1].over == 10min);
  CHECK(s.load.total() == 10min + 20s);
  CHECK(s.load.peak() == 200);
  CHECK(s.load.max_in_flight == 0);
  CHECK(s.load.iterations == 0);

  REQUIRE(s.halt.thresholds.size() == 3);
  CHECK(s.halt.thresholds[2].step == "list products");
  CHECK(s.halt.thresholds[2].abort);

  CHECK(s.http.version == HttpSpec::Version::Http1);
  CHECK(s.http.engine == HttpSpec::Engine::Beast);
  CHECK_FALSE(s.http.follow_redirects);
  CHECK(s.http.tls.verify);
  CHECK(s.http.tls.ca_file == "ca.pem");
  CHECK(s.http.tls.ca_pem == kPem);
  CHECK(s.http.tls.cert_file == "client.pem");
  CHECK(s.http.tls.cert_pem == kPem);
  CHECK(s.http.tls.key_file == "client.key");
  CHECK(s.http.tls.key_pem == kKeyPem);

  // The feeder, its rows, and what the master ships.
  REQUIRE(s.data.size() == 1);
  const Feeder& accounts = s.data[0];
  CHECK(accounts.name == "accounts");
  CHECK(accounts.file == "accounts.csv");
  CHECK(accounts.order == Feeder::Order::Sequence);
  CHECK(accounts.split == Feeder::Split::PerWorker);
  CHECK(accounts.on_exhausted == Feeder::OnExhausted::Wrap);
  CHECK(accounts.columns == std::vector<std::string>{"user", "password"});
  CHECK(accounts.rows ==
        std::vector<std::vector<std::string>>{{"alice", "pw1"}, {"bob, jr", "say \"hi\""}});
  CHECK(accounts.where.line == 26);
  CHECK(accounts.where.column == 3);
  CHECK(s.files == std::map<std::string, std::string>{{"accounts.csv", kAccountsCsv},
                                                      {"ca.pem", kPem},
                                                      {"client.key", kKeyPem},
                                                      {"client.pem", kPem}});

  // One slot per data column and per capture name.
  REQUIRE(s.slots.size() == 3);
  const uint32_t user = s.slots.at("accounts.user");
  const uint32_t password = s.slots.at("accounts.password");
  const uint32_t token = s.slots.at("token");
  CHECK(accounts.slots == std::vector<uint32_t>{user, password});
  CHECK(std::set<uint32_t>{user, password, token} == std::set<uint32_t>{0, 1, 2});

  REQUIRE(s.flows.size() == 2);
  CHECK(s.flows[0].feeders.empty());
  CHECK(s.flows[0].first_request_stats_index == 0);
  const Flow& checkout = s.flows[1];
  CHECK(checkout.feeders == std::vector<uint32_t>{0});
  CHECK(checkout.first_request_stats_index == 2);

  const Step& login = checkout.steps[0];
  std::vector<std::string> values(3);
  values[user] = "bob";
  values[password] = "p\"w";
  values[token] = "T";
  REQUIRE(login.body);
  CHECK(renderWith(*login.body, values) == R"({"user":"bob","password":"p"w"})");
  REQUIRE(login.captures.size() == 1);
  CHECK(login.captures[0].name == "token");
  CHECK(login.captures[0].slot == token);
  CHECK(login.captures[0].kind == Capture::Kind::Json);
  CHECK(login.captures[0].json.text == "$.token");
  REQUIRE(login.captures[0].json.segments.size() == 1);
  CHECK(login.captures[0].json.segments[0].key == "token");

  const Step& cart = checkout.steps[1];
  REQUIRE(header(cart, "Authorization"));
  CHECK(renderWith(*header(cart, "Authorization"), values) == "Bearer T");
  CHECK(cart.expect.status == std::vector<int>{200, 201});
  CHECK(cart.expect.body_contains == "\"ok\"");
  REQUIRE(cart.expect.json.size() == 1);
  CHECK(cart.expect.json[0].path.text == "$.items[0].sku");
  CHECK(cart.expect.json[0].path.segments.size() == 3);
  CHECK(cart.expect.json[0].expected_json == "42");
  CHECK(cart.expect.max_latency == 500ms);
  CHECK(checkout.steps[2].kind == Step::Kind::Think);
  CHECK(checkout.steps[3].kind == Step::Kind::Loop);
}

TEST_CASE("the open model fills its stages and caps what is in flight", "[scenario][load]") {
  const Scenario s = loadScenarioText(R"(name: o
target: http://127.0.0.1:8080
load: {rate: 30/m, ramp: 0s, duration: 1m, iterations: 500}
flows: [{steps: [{get: /}]}]
)",
                                      "o.yaml");
  CHECK(s.load.model == LoadSpec::Model::Open);
  CHECK(s.load.rate == Approx(0.5));
  CHECK(s.load.users == 0);
  CHECK(s.load.max_in_flight == kDefaultMaxInFlight);
  CHECK(s.load.iterations == 500);
  CHECK_FALSE(s.load.stages_written);
  // A ramp of 0s is kept as a stage: a step straight to the level.
  REQUIRE(s.load.stages.size() == 2);
  CHECK(s.load.stages[0].to == Approx(0.5));
  CHECK(s.load.stages[0].over == 0s);
  CHECK(s.load.stages[1].hold);
  CHECK(s.load.stages[1].over == 1min);

  const Scenario capped = loadScenarioText(R"(name: o
target: http://127.0.0.1:8080
load: {rate: 500/s, duration: 1m, max_in_flight: 64}
flows: [{steps: [{get: /}]}]
)",
                                           "o.yaml");
  CHECK(capped.load.rate == 500);
  CHECK(capped.load.max_in_flight == 64);
}

TEST_CASE("written stages choose the model from the form of their levels", "[scenario][load]") {
  const Scenario open = loadScenarioText(R"(name: s
target: http://127.0.0.1:8080
load:
  stages:
    - {to: 100/s, over: 1m}
    - {to: 1000/s, over: 5m}
    - {hold: 30m}
    - {to: 0/s, over: 10s}
flows: [{steps: [{get: /}]}]
)",
                                         "s.yaml");
  CHECK(open.load.model == LoadSpec::Model::Open);
  CHECK(open.load.stages_written);
  REQUIRE(open.load.stages.size() == 4);
  CHECK(open.load.stages[1].to == 1000);
  CHECK(open.load.stages[1].over == 5min);
  CHECK(open.load.stages[2].hold);
  CHECK(open.load.stages[2].over == 30min);
  CHECK(open.load.rate == 1000);
  CHECK(open.load.max_in_flight == kDefaultMaxInFlight);
  CHECK(open.load.total() == 36min + 10s);

  const Scenario closed = loadScenarioText(R"(name: s
target: http://127.0.0.1:8080
load:
  stages: [{hold: 5s}, {to: 50, over: 1m}, {to: 20, over: 0s}, {hold: 1m}]
flows: [{steps: [{get: /}]}]
)",
                                           "s.yaml");
  CHECK(closed.load.model == LoadSpec::Model::Closed);
  CHECK(closed.load.users == 50);
  CHECK(closed.load.ramp == 0s);
  CHECK(closed.load.duration == 0s);
  CHECK(closed.load.max_in_flight == 0);
  REQUIRE(closed.load.stages.size() == 4);
  CHECK(closed.load.stages[0].hold);
  CHECK(closed.load.stages[2].to == 20);
}

TEST_CASE("--set overrides apply to the YAML before it is validated", "[scenario][set]") {
  const std::string yaml = R"(name: t
target: http://127.0.0.1:8080
load: {users: 2, duration: 3s}
variables:
  region: eu-west
flows:
  - steps:
      - get: /p?region={{region}}
  - steps:
      - get: /q
)";
  LoadOptions options;
  options.overrides = {"load.users=7",
                       "variables.region=us",
                       "flows[1].weight=2.5",
                       "http.timeout=2s",
                       "http.headers={A: b}",
                       "load.duration=45s",
                       "flows[0].steps[0].name=first"};
  const Scenario s = loadScenarioText(yaml, "o.yaml", options);
  CHECK(s.overrides == options.overrides);
  CHECK(s.load.users == 7);
  CHECK(s.load.stages[0].to == 7);
  CHECK(s.load.duration == 45s);
  CHECK(s.load.stages[1].over == 45s); // how `master --duration` works
  CHECK(s.variables.at("region") == "us");
  CHECK(render(s.flows[0].steps[0].url) == "/p?region=us");
  CHECK(s.step_table[0].name == "first");
  CHECK(s.flows[1].weight == 2.5);
  CHECK(s.http.timeout == 2s);
  CHECK(s.http.headers == std::vector<std::pair<std::string, std::string>>{{"A", "b"}});
  // The source stays as written: the overrides travel beside it.
  CHECK(s.source_text == yaml);
}

TEST_CASE("--set creates missing keys and replaces whole subtrees", "[scenario][set]") {
  LoadOptions options;
  options.overrides = {"variables.fresh=1", "flows[0]={name: swapped, steps: [{get: /x}]}",
                       "http.tls.verify=false", "load={rate: 5/s, duration: 2s}"};
  const Scenario s =
      loadScenarioText(withFlows("  - steps:\n      - get: /{{vu}}\n"), "c.yaml", options);
  CHECK(s.variables.at("fresh") == "1");
  CHECK(s.flows[0].name == "swapped");
  CHECK(render(s.flows[0].steps[0].url) == "/x");
  CHECK_FALSE(s.http.tls.verify);
  CHECK(s.load.model == LoadSpec::Model::Open);
  CHECK(s.load.rate == 5);

  // Stages and a duration do not mix, also when the duration comes from --set.
  options.overrides = {"load.duration=30s"};
  const ConfigError e = loadErrorWith(R"(name: t
target: http://127.0.0.1:8080
load: {stages: [{to: 5, over: 1m}]}
flows: [{steps: [{get: /}]}]
)",
                                      options);
  CHECK(e.file() == "--set load.duration=30s");
  CHECK(e.keyPath() == "load.duration");
  CHECK_THAT(e.message(), Catch::StartsWith("'duration' cannot be used with stages"));
}

TEST_CASE("a bad --set names the override, whatever is wrong with it", "[scenario][set]") {
  const std::string yaml = withFlows("  - steps: [{get: /}]\n");
  auto errorOf = [&](const std::string& text) {
    LoadOptions options;
    options.overrides = {text};
    return loadErrorWith(yaml, options);
  };
  struct Case {
    std::string text;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"load.users50", "expected KEY.PATH=VALUE"},
           {"=5", "the key path before '=' is empty"},
           {"load..users=5", "empty key in the path"},
           {"flows[3].weight=2", "index [3] is out of range: flows has 1 item"},
           {"flows[x].weight=2", "expected a list index like [0]"},
           {"load.users.max=5", "load.users is \"2\", not a mapping"},
           {"flows.weight=2", "flows is a list, not a mapping"},
           {"load[0]=1", "load is a mapping, not a list"},
           {"load.users=[1", "the value is not valid YAML"},
           {"load.users=,", "the value is not valid YAML"},
           {"colour.shade=blue", "unknown key 'colour'"},
       }) {
    INFO(c.text);
    const ConfigError e = errorOf(c.text);
    CHECK(e.file() == "--set " + c.text);
    CHECK(e.line() == 0);
    CHECK_THAT(e.message(), Catch::Contains(c.message));
    CHECK(std::string(e.what()).find('\n') == std::string::npos);
  }

  // A value that does not validate points at the override, not at the file.
  const ConfigError bad_value = errorOf("load.users=abc");
  CHECK(std::string(bad_value.what()) ==
        "--set load.users=abc: load.users: expected an integer, got \"abc\"");
  const ConfigError unknown_key = errorOf("load.userz=5");
  CHECK(std::string(unknown_key.what()) ==
        "--set load.userz=5: load.userz: unknown key 'userz' (did you mean 'users'?)");
  const ConfigError deep = errorOf("http.headers={A: [1]}");
  CHECK(deep.keyPath() == "http.headers.A");
  CHECK(deep.file() == "--set http.headers={A: [1]}");
  // An error elsewhere in the file still points into the file.
  LoadOptions options;
  options.overrides = {"load.users=5"};
  const ConfigError elsewhere = loadErrorWith(withFlows("  - steps: [{get: nope}]\n"), options);
  CHECK(elsewhere.file() == "inline.yaml");
  CHECK(elsewhere.line() == 5);
}

TEST_CASE("env() reads --env-file values before the process environment", "[scenario][env]") {
  ::setenv("STAMPEDE_TEST_ENV_A", "from-process", 1);
  ::setenv("STAMPEDE_TEST_ENV_B", "process-b", 1);
  const std::map<std::string, std::string> overlay{{"STAMPEDE_TEST_ENV_A", "from-file"},
                                                   {"STAMPEDE_TEST_ENV_ONLY_FILE", "f"}};
  LoadOptions options;
  options.env_overlay = &overlay;
  const Scenario s = loadScenarioText(withFlows(R"(  - steps:
      - get: /a/{{env("STAMPEDE_TEST_ENV_A")}}/{{env("STAMPEDE_TEST_ENV_B")}}/{{env("STAMPEDE_TEST_ENV_ONLY_FILE")}}
)"),
                                      "e.yaml", options);
  ::unsetenv("STAMPEDE_TEST_ENV_A");
  ::unsetenv("STAMPEDE_TEST_ENV_B");
  CHECK(render(s.flows[0].steps[0].url) == "/a/from-file/process-b/f");
  CHECK(s.env == std::map<std::string, std::string>{{"STAMPEDE_TEST_ENV_A", "from-file"},
                                                    {"STAMPEDE_TEST_ENV_B", "process-b"},
                                                    {"STAMPEDE_TEST_ENV_ONLY_FILE", "f"}});
}

TEST_CASE("writeCsv output reads back as the same rows", "[scenario][csv]") {
  const std::vector<std::string> columns{"user", "note", "empty"};
  const std::vector<std::vector<std::string>> rows{
      {"alice", "plain", ""},
      {"bob, jr", "say \"hi\"", "x"},
      {"carol", "two\nlines", "crlf\r\nhere"},
      {" spaced ", "\"", ","},
  };
  const std::string csv = writeCsv(columns, rows);
  CHECK(csv.rfind("user,note,empty\r\nalice,plain,\"\"\r\n\"bob, jr\",\"say \"\"hi\"\"\",x\r\n",
                  0) == 0);

  // Through the worker's path: the master ships the slice under the name the scenario wrote.
  const std::map<std::string, std::string> shipped{{"accounts.csv", csv}};
  LoadOptions options;
  options.shipped_files = &shipped;
  const Scenario s = loadScenarioText(withFlows("  - steps: [{get: '/{{accounts.user}}'}]\n",
                                                "data: {accounts: {csv: accounts.csv}}\n"),
                                      "/nonexistent/dir/w.yaml", options);
  REQUIRE(s.data.size() == 1);
  CHECK(s.data[0].columns == columns);
  CHECK(s.data[0].rows == rows);

  // A one-column file whose value is empty survives too (it is written quoted).
  const std::string one = writeCsv({"only"}, {{""}, {"v"}});
  const std::map<std::string, std::string> shipped_one{{"one.csv", one}};
  options.shipped_files = &shipped_one;
  const Scenario t = loadScenarioText(
      withFlows("  - steps: [{get: /}]\n", "data: {one: {csv: one.csv}}\n"), "w.yaml", options);
  CHECK(t.data[0].rows == std::vector<std::vector<std::string>>{{""}, {"v"}});
}

TEST_CASE("the CSV reader takes CRLF, a BOM, quoted line breaks and blank lines",
          "[scenario][csv]") {
  TempDir dir;
  dir.write("d.csv", "\xEF\xBB\xBFid,text\r\n1,\"a\r\nb\"\r\n\r\n2,\"\"\r\n3,plain");
  dir.write("s.yaml", withFlows("  - steps: [{get: '/{{d.id}}'}]\n",
                                "data: {d: {csv: d.csv, order: random, split: shared, "
                                "on_exhausted: halt}}\n"));
  const Scenario s = loadScenarioFile((dir.path() / "s.yaml").string());
  const Feeder& d = s.data[0];
  CHECK(d.columns == std::vector<std::string>{"id", "text"});
  CHECK(d.rows ==
        std::vector<std::vector<std::string>>{{"1", "a\r\nb"}, {"2", ""}, {"3", "plain"}});
  CHECK(d.order == Feeder::Order::Random);
  CHECK(d.split == Feeder::Split::Shared);
  CHECK(d.on_exhausted == Feeder::OnExhausted::Halt);

  // A bad row is reported with the CSV's own line, counting line breaks inside quotes.
  dir.write("bad.csv", "a,b\n1,\"x\ny\"\n2,3,4\n");
  dir.write("b.yaml", withFlows("  - steps: [{get: /}]\n", "data: {f: {csv: bad.csv}}\n"));
  try {
    loadScenarioFile((dir.path() / "b.yaml").string());
    FAIL("loaded a bad CSV");
  } catch (const ConfigError& e) {
    CHECK(e.keyPath() == "data.f.csv");
    CHECK(e.line() == 4);
    CHECK(e.message() == "bad.csv:4: this row has 3 fields, the header has 2");
  }
}

TEST_CASE("a worker takes named files only from what the master shipped", "[scenario][files]") {
  const std::string yaml =
      withFlows("  - steps: [{get: /}]\n", "http: {tls: {ca: ca.pem, cert: c.pem, key: c.key}}\n");
  const std::map<std::string, std::string> shipped{
      {"ca.pem", kPem}, {"c.pem", kPem}, {"c.key", kKeyPem}};
  LoadOptions options;
  options.shipped_files = &shipped;
  const Scenario s = loadScenarioText(yaml, "/nowhere/worker.yaml", options);
  CHECK(s.http.tls.ca_pem == kPem);
  CHECK(s.http.tls.key_pem == kKeyPem);
  CHECK(s.files.size() == 3);

  const std::map<std::string, std::string> partial{{"ca.pem", kPem}, {"c.pem", kPem}};
  options.shipped_files = &partial;
  const ConfigError e = loadErrorWith(yaml, options);
  CHECK(e.keyPath() == "http.tls.key");
  CHECK(e.message() == "\"c.key\" is not among the files the master shipped");
}

TEST_CASE("captures get slots and may be used by the steps after them", "[scenario][capture]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - name: a
    steps:
      - post: /login
        capture:
          token: {json: "$['access token']"}
          where: {header: location}
      - loop: 2
        steps:
          - get: /page
            capture:
              cursor: {regex: 'next=(\w+)'}
          - get: /item/{{cursor}}
            headers: {Authorization: "Bearer {{token}}", X-Where: "{{where}}"}
      - get: /again/{{cursor}}
  - name: b
    steps:
      - get: /b
        capture: {token: {header: X-Token}}
      - get: /b/{{token}}
)"),
                                      "c.yaml");
  CHECK(s.slots.size() == 3);
  const Flow& a = s.flows[0];
  REQUIRE(a.steps[0].captures.size() == 2);
  const Capture& token = a.steps[0].captures[0];
  CHECK(token.kind == Capture::Kind::Json);
  REQUIRE(token.json.segments.size() == 1);
  CHECK(token.json.segments[0].key == "access token");
  const Capture& where = a.steps[0].captures[1];
  CHECK(where.kind == Capture::Kind::Header);
  CHECK(where.header == "location");
  const Capture& cursor = a.steps[1].steps[0].captures[0];
  CHECK(cursor.kind == Capture::Kind::Regex);
  CHECK(cursor.pattern == "next=(\\w+)");
  REQUIRE(cursor.regex);
  std::smatch m;
  const std::string body = "x next=abc y";
  REQUIRE(std::regex_search(body, m, *cursor.regex));
  CHECK(m[1] == "abc");
  // The same name in two flows is one slot.
  CHECK(s.flows[1].steps[0].captures[0].slot == token.slot);
  CHECK(s.flows[1].steps[1].url.slotsUsed() == std::vector<uint32_t>{token.slot});
}

TEST_CASE("request options: methods, query, form, timeout and Content-Type defaults",
          "[scenario][request]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - steps:
      - patch: /items/1
        query: {page: 2, q: "{{region}} x"}
        form: {user: a b, n: "{{vu}}"}
        timeout: 250ms
      - head: /h
      - options: /o
      - put: /f
        form: {a: 1}
        headers: {content-type: text/x-custom}
      - delete: /d
        json: [1]
)",
                                                "variables: {region: eu}\n"),
                                      "r.yaml");
  const auto& steps = s.flows[0].steps;
  const Step& patch = steps[0];
  CHECK(patch.method == "PATCH");
  REQUIRE(patch.query.size() == 2);
  CHECK(patch.query[0].first == "page");
  CHECK(render(patch.query[0].second) == "2");
  CHECK(render(patch.query[1].second) == "eu x");
  CHECK_FALSE(patch.body);
  REQUIRE(patch.form.size() == 2);
  CHECK(patch.form[0].first == "user");
  CHECK(render(patch.form[0].second) == "a b");
  CHECK(render(patch.form[1].second) == "1");
  CHECK(patch.timeout == 250ms);
  REQUIRE(header(patch, "Content-Type"));
  CHECK(render(*header(patch, "Content-Type")) == "application/x-www-form-urlencoded");
  CHECK(steps[1].method == "HEAD");
  CHECK(steps[2].method == "OPTIONS");
  CHECK_FALSE(steps[1].timeout);
  // A Content-Type the step sets wins over form's default.
  CHECK(steps[3].headers.size() == 1);
  CHECK(render(*header(steps[4], "Content-Type")) == "application/json");
  CHECK(s.step_table[0].name == "PATCH /items/1");
  CHECK(s.step_table[0].method == "PATCH");
}

TEST_CASE("expect.json values are compact JSON; expect.header is name and text",
          "[scenario][expect]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - steps:
      - get: /
        expect:
          json:
            $.n: 42
            $.f: 2.5
            $.b: true
            $.z: null
            $.s: ok
            $.q: "42"
            "$['a b'][1]": -7
          header: {Content-Type: json, X-Present: "", X-Any:}
          max_latency: 1.5s
)"),
                                      "x.yaml");
  const Expect& e = s.flows[0].steps[0].expect;
  std::vector<std::string> got;
  for (const auto& j : e.json)
    got.push_back(j.path.text + "=" + j.expected_json);
  CHECK(got == std::vector<std::string>{"$.n=42", "$.f=2.5", "$.b=true", "$.z=null", "$.s=\"ok\"",
                                        "$.q=\"42\"", "$['a b'][1]=-7"});
  REQUIRE(e.header.size() == 3);
  CHECK(e.header[0].name == "Content-Type");
  CHECK(e.header[0].contains == "json");
  CHECK(e.header[1].contains.empty());
  CHECK(e.header[2].name == "X-Any");
  CHECK(e.header[2].contains.empty());
  CHECK(e.max_latency == 1500ms);
  CHECK(e.status.empty());
}

TEST_CASE("http options: version 2 picks nghttp2, redirects, TLS without files",
          "[scenario][http]") {
  const Scenario s = loadScenarioText(
      withFlows("  - steps: [{get: /}]\n",
                "http: {version: \"2\", follow_redirects: true, tls: {verify: false}}\n"),
      "h.yaml");
  CHECK(s.http.version == HttpSpec::Version::Http2);
  CHECK(s.http.engine == HttpSpec::Engine::Nghttp2);
  CHECK(s.http.h2.streams_per_connection == 1);
  CHECK(s.http.follow_redirects);
  CHECK_FALSE(s.http.tls.verify);
  CHECK(s.http.tls.ca_pem.empty());
  CHECK(s.files.empty());

  const Scenario curl = loadScenarioText(
      withFlows("  - steps: [{get: /}]\n", "http: {version: 2, engine: curl}\n"), "h.yaml");
  CHECK(curl.http.engine == HttpSpec::Engine::Curl);

  const Scenario h2 = loadScenarioText(
      withFlows("  - steps: [{get: /}]\n",
                "http: {version: \"2\", h2: {streams_per_connection: 10, window: 64KiB}}\n"),
      "h.yaml");
  CHECK(h2.http.engine == HttpSpec::Engine::Nghttp2);
  CHECK(h2.http.h2.streams_per_connection == 10);
  CHECK(h2.http.h2.window == 64 * 1024);
  CHECK(curl.http.version == HttpSpec::Version::Http2);
}

TEST_CASE("http.max_body: 64 MiB by default, in bytes or KiB, MiB, GiB", "[scenario][http]") {
  auto maxBody = [](const std::string& http) {
    return loadScenarioText(withFlows("  - steps: [{get: /}]\n", http), "m.yaml").http.max_body;
  };
  CHECK(maxBody("") == 64u << 20);
  CHECK(maxBody("http: {max_body: 1000}\n") == 1000);
  CHECK(maxBody("http: {max_body: 512KiB}\n") == 512u << 10);
  CHECK(maxBody("http: {max_body: 2 GiB}\n") == uint64_t{2} << 30);
  CHECK_THROWS_WITH(maxBody("http: {max_body: 1.5MiB}\n"),
                    Catch::Contains("http.max_body: expected a size > 0"));
  CHECK_THROWS_WITH(maxBody("http: {max_body: [1]}\n"), Catch::Contains("got a list"));
}

TEST_CASE("think times: fixed, uniform and exponential, on flows and as steps",
          "[scenario][think]") {
  const Scenario s = loadScenarioText(withFlows(R"(  - think: exp(200ms)
    steps:
      - get: /
      - think: exp( 1.5s )
      - think: 0s
)"),
                                      "t.yaml");
  CHECK(s.flows[0].think.kind == ThinkTime::Kind::Exponential);
  CHECK(s.flows[0].think.a == 200ms);
  CHECK(s.flows[0].steps[1].think.kind == ThinkTime::Kind::Exponential);
  CHECK(s.flows[0].steps[1].think.a == 1500ms);
  CHECK(s.flows[0].steps[2].think.kind == ThinkTime::Kind::Fixed);
}

TEST_CASE("a flow draws only from the feeders its templates use", "[scenario][data]") {
  TempDir dir;
  dir.write("a.csv", "x,y\n1,2\n");
  dir.write("b.csv", "z\n3\n");
  dir.write("unused.csv", "w\n4\n");
  dir.write("s.yaml", R"(name: f
target: http://127.0.0.1:8080
load: {users: 1, duration: 1s}
http:
  headers: {X-Z: "{{b.z}}"}
data:
  unused: {csv: unused.csv}
  a: {csv: a.csv}
  b: {csv: b.csv}
flows:
  - steps:
      - get: /{{a.y}}
  - steps:
      - get: /plain
        headers: {X-Z: fixed}
)");
  const Scenario s = loadScenarioFile((dir.path() / "s.yaml").string());
  REQUIRE(s.data.size() == 3);
  CHECK(s.data[0].name == "unused");
  CHECK(s.data[1].slots == std::vector<uint32_t>{s.slots.at("a.x"), s.slots.at("a.y")});
  // http.headers reach every step that does not set the header itself.
  CHECK(s.flows[0].feeders == std::vector<uint32_t>{1, 2});
  CHECK(s.flows[1].feeders.empty());
  CHECK(s.files.size() == 3);
}

TEST_CASE("capacity: replaces load: with an open-model run, and errors do not halt it",
          "[scenario][capacity]") {
  const std::string head = "name: c\ntarget: http://127.0.0.1:8080\n";
  const std::string flows = "flows:\n  - steps: [{get: /}]\n";
  const Scenario s = loadScenarioText(head +
                                          "capacity:\n  start: 100/s\n  max: 5000/s\n  probe: "
                                          "20s\n  warmup: 5s\n  resolution: 5%\n  confirm: 2\n"
                                          "  slo: {p99: 200ms, error_rate: 0.1%}\n"
                                          "  max_in_flight: 500\n  max_lag: 20ms\n" +
                                          flows,
                                      "c.yaml");
  REQUIRE(s.capacity);
  CHECK(s.capacity->start == 100);
  CHECK(s.capacity->max == 5000);
  CHECK(s.capacity->probe == std::chrono::seconds(20));
  CHECK(s.capacity->warmup == std::chrono::seconds(5));
  CHECK(s.capacity->resolution == Approx(0.05));
  CHECK(s.capacity->confirm == 2);
  CHECK(s.capacity->slo_p99 == std::chrono::milliseconds(200));
  CHECK(s.capacity->slo_error_rate == Approx(0.001));
  CHECK(s.capacity->max_lag == std::chrono::milliseconds(20));
  CHECK(s.load.model == LoadSpec::Model::Open);
  CHECK(s.load.max_in_flight == 500);
  CHECK(s.load.total() > std::chrono::seconds(20 * 10));
  CHECK(s.halt.on_error == HaltSpec::OnError::Never);

  // halt.on_error written: the user's word stands (an error they mark fatal still halts).
  const Scenario fatal = loadScenarioText(
      head + "capacity: {start: 10/s}\nhalt: {on_error: first}\n" + flows, "f.yaml");
  CHECK(fatal.halt.on_error == HaltSpec::OnError::First);

  // --find-capacity: the default search, load: checked but unused.
  LoadOptions options;
  options.find_capacity = true;
  const Scenario found =
      loadScenarioText(head + "load: {users: 5, duration: 1s}\n" + flows, "l.yaml", options);
  REQUIRE(found.capacity);
  CHECK(found.capacity->start == 10);
  CHECK(found.load.model == LoadSpec::Model::Open);
  CHECK(loadError(head + flows).what() ==
        std::string("inline.yaml:1:1: load: required key 'load' is missing (or capacity: for a "
                    "capacity search, or a load: on every flow)"));
}

TEST_CASE("capacity: probes keep their sub-second parts, down to a judged part of 500 ms",
          "[scenario][capacity]") {
  using namespace std::chrono_literals;
  const std::string head = "name: c\ntarget: http://127.0.0.1:8080\n";
  const std::string flows = "flows:\n  - steps: [{get: /}]\n";
  const Scenario s =
      loadScenarioText(head + "capacity:\n  probe: 1.5s\n  warmup: 250ms\n" + flows, "c.yaml");
  REQUIRE(s.capacity);
  CHECK(s.capacity->probe == 1500ms);
  CHECK(s.capacity->warmup == 250ms);
  // At the floor exactly: 500 ms judged.
  const Scenario floor =
      loadScenarioText(head + "capacity:\n  probe: 1.25s\n  warmup: 750ms\n" + flows, "c.yaml");
  CHECK(floor.capacity->probe - floor.capacity->warmup == stampede::common::kMinCapacityJudged);
  // No warmup written: the default 2 s, or none when it would leave under the floor.
  const Scenario with_default =
      loadScenarioText(head + "capacity:\n  probe: 2.5s\n" + flows, "c.yaml");
  CHECK(with_default.capacity->warmup == 2s);
  const Scenario without = loadScenarioText(head + "capacity:\n  probe: 2.4s\n" + flows, "c.yaml");
  CHECK(without.capacity->warmup == 0s);
  CHECK(loadError(head + "capacity:\n  probe: 0.4s\n" + flows).what() ==
        std::string("inline.yaml:4:10: capacity.probe: a probe lasts at least 0.5s (the workers "
                    "report once a second; docs/scenario.md), got \"0.4s\""));
  CHECK(loadError(head + "capacity:\n  probe: 1s\n  warmup: 501ms\n" + flows).what() ==
        std::string("inline.yaml:5:11: capacity.warmup: the warmup leaves 0.499s of the 1s probe "
                    "to judge, under the 0.5s floor (the workers report once a second; "
                    "docs/scenario.md): make the probe at least 1.001s"));
}
