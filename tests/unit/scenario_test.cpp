#include "common/config_error.h"
#include "common/scenario.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

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

TEST_CASE("every prefix of a valid scenario loads or fails with a ConfigError", "[scenario]") {
  // Truncation exercises every half-written construct; nothing but ConfigError may escape.
  const std::string text = readFile(kSourceDir / "config" / "examples" / "demo.yaml");
  REQUIRE_FALSE(text.empty());
  for (size_t n = 0; n <= text.size(); ++n) {
    try {
      loadScenarioText(text.substr(0, n), "demo.yaml");
    } catch (const ConfigError&) {
    } catch (const std::exception& e) {
      FAIL("prefix of " << n << " bytes threw " << e.what());
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
  Expect listed{{201, 404}};
  CHECK(listed.allows(404));
  CHECK(listed.allows(201));
  CHECK_FALSE(listed.allows(200));
}
