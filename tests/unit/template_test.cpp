#include "common/template.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <regex>
#include <set>

using stampede::common::RenderContext;
using stampede::common::Template;
using stampede::common::TemplateError;

namespace {

const std::map<std::string, std::string> kNoVariables;

struct Fixture {
  std::mt19937_64 rng{42};
  RenderContext ctx{7, 3, 2, &rng};
};

std::string renderOnce(std::string_view text,
                       const std::map<std::string, std::string>& variables = kNoVariables) {
  Fixture f;
  return Template::compile(text, variables).render(f.ctx);
}

// The offset of the TemplateError that compiling `text` throws; fails the test if none.
size_t errorOffset(std::string_view text, const std::string& message_part = "") {
  try {
    Template::compile(text, {{"region", "eu"}});
  } catch (const TemplateError& e) {
    if (!message_part.empty())
      CHECK_THAT(e.what(), Catch::Contains(message_part));
    return e.offset();
  }
  FAIL("no TemplateError for: " << text);
  return 0;
}

} // namespace

TEST_CASE("plain text renders unchanged and is constant", "[template]") {
  const Template t = Template::compile("/products?page=1", kNoVariables);
  CHECK(t.isConstant());
  CHECK(t.source() == "/products?page=1");
  CHECK(renderOnce("/products?page=1") == "/products?page=1");
  CHECK(Template::compile("", kNoVariables).isConstant());
  CHECK(renderOnce("").empty());
}

TEST_CASE("variables resolve at compile time and merge with literals", "[template]") {
  const std::map<std::string, std::string> vars{{"region", "eu-west"}, {"v", "2"}};
  const Template t = Template::compile("/api/v{{v}}/{{ region }}/items", vars);
  // One merged literal part: nothing left to evaluate per request.
  CHECK(t.isConstant());
  CHECK(renderOnce("/api/v{{v}}/{{ region }}/items", vars) == "/api/v2/eu-west/items");
}

TEST_CASE("whitespace inside the braces is allowed", "[template]") {
  CHECK(renderOnce("{{vu}}") == "7");
  CHECK(renderOnce("{{  vu\t}}") == "7");
  CHECK(renderOnce("{{ random_int( 5 , 5 ) }}") == "5");
}

TEST_CASE("worker_index, vu and iteration come from the render context", "[template]") {
  const Template t = Template::compile("w{{worker_index}}-u{{vu}}-i{{iteration}}", kNoVariables);
  CHECK_FALSE(t.isConstant());
  std::mt19937_64 rng{1};
  RenderContext ctx{123456789012345ULL, 9, 4, &rng};
  CHECK(t.render(ctx) == "w4-u123456789012345-i9");
}

TEST_CASE("uuid() is a random version 4 UUID", "[template]") {
  const Template t = Template::compile("{{uuid()}}", kNoVariables);
  Fixture f;
  const std::regex shape("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string id = t.render(f.ctx);
    REQUIRE(std::regex_match(id, shape));
    seen.insert(id);
  }
  CHECK(seen.size() == 100);
}

TEST_CASE("random_int(a, b) stays within both bounds and reaches them", "[template]") {
  const Template t = Template::compile("{{random_int(-2, 2)}}", kNoVariables);
  Fixture f;
  std::set<int> seen;
  for (int i = 0; i < 500; ++i) {
    const int v = std::stoi(t.render(f.ctx));
    REQUIRE(v >= -2);
    REQUIRE(v <= 2);
    seen.insert(v);
  }
  CHECK(seen == std::set<int>{-2, -1, 0, 1, 2});
}

TEST_CASE("random_string(n) gives n alphanumeric characters", "[template]") {
  const Template t = Template::compile("{{random_string(40)}}", kNoVariables);
  Fixture f;
  const std::string a = t.render(f.ctx);
  const std::string b = t.render(f.ctx);
  CHECK(a.size() == 40);
  CHECK(std::regex_match(a, std::regex("[a-zA-Z0-9]{40}")));
  CHECK(a != b);
}

TEST_CASE("renders are reproducible from the generator's seed", "[template]") {
  const Template t = Template::compile("{{uuid()}}/{{random_int(1, 1000000)}}", kNoVariables);
  std::mt19937_64 r1{5}, r2{5};
  CHECK(t.render(RenderContext{0, 0, 0, &r1}) == t.render(RenderContext{0, 0, 0, &r2}));
}

TEST_CASE("now_ms() is the system clock in milliseconds", "[template]") {
  using namespace std::chrono;
  const auto before = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  const long long rendered = std::stoll(renderOnce("{{now_ms()}}"));
  const auto after = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  CHECK(rendered >= before);
  CHECK(rendered <= after);
}

TEST_CASE("env() is read at compile time and masked on request", "[template]") {
  ::setenv("STAMPEDE_TEST_TOKEN", "s3cr3t", 1);
  const Template t = Template::compile("Bearer {{env(\"STAMPEDE_TEST_TOKEN\")}}", kNoVariables);
  ::setenv("STAMPEDE_TEST_TOKEN", "changed-later", 1);
  Fixture f;
  CHECK(t.render(f.ctx) == "Bearer s3cr3t");
  CHECK(t.render(f.ctx, true) == "Bearer ***");
  // A secret is never folded into a literal, or masking could not find it.
  CHECK_FALSE(t.isConstant());
  ::unsetenv("STAMPEDE_TEST_TOKEN");
}

TEST_CASE("an unset environment variable is an error at its argument", "[template]") {
  ::unsetenv("STAMPEDE_TEST_SURELY_UNSET");
  CHECK(errorOffset("x{{ env(\"STAMPEDE_TEST_SURELY_UNSET\") }}", "STAMPEDE_TEST_SURELY_UNSET") ==
        8);
}

TEST_CASE("renderTo appends and does not reallocate an output with capacity", "[template]") {
  const Template t = Template::compile(
      "/p/{{random_int(1, 1000)}}?id={{uuid()}}&s={{random_string(16)}}&t={{now_ms()}}&u={{vu}}",
      kNoVariables);
  Fixture f;
  std::string out = "GET ";
  out.reserve(512);
  const char* data = out.data();
  const size_t capacity = out.capacity();
  t.renderTo(f.ctx, out);
  CHECK(out.rfind("GET /p/", 0) == 0);
  CHECK(out.data() == data);
  CHECK(out.capacity() == capacity);
  const size_t first = out.size();
  t.renderTo(f.ctx, out);
  CHECK(out.size() > first);
  CHECK(out.data() == data);
}

TEST_CASE("a stray closing brace pair is literal text", "[template]") {
  // Compact JSON ends nested objects with "}}"; that must not be read as a template.
  CHECK(renderOnce("{\"a\":{\"b\":\"{{vu}}\"}}") == "{\"a\":{\"b\":\"7\"}}");
}

TEST_CASE("template errors carry the byte offset of the problem", "[template]") {
  CHECK(errorOffset("/a/{{ nope }}", "unknown name 'nope'") == 6);
  CHECK(errorOffset("/a/{{regoin}}", "did you mean 'region'") == 5);
  CHECK(errorOffset("/a/{{uid()}}", "did you mean 'uuid()'") == 5);
  CHECK(errorOffset("/a/{{vu", "unclosed") == 3);
  CHECK(errorOffset("{{a {{vu}}", "unclosed") == 0);
  CHECK(errorOffset("xx{{ }}", "empty") == 2);
  CHECK(errorOffset("{{random_int(5, 1)}}", "low <= high") == 13);
  CHECK(errorOffset("{{random_int(1)}}", "','") == 14);
  CHECK(errorOffset("{{random_int(a, 2)}}", "integer") == 13);
  CHECK(errorOffset("{{random_string(0)}}", "random_string") == 16);
  CHECK(errorOffset("{{uuid}}", "function") == 2);
  CHECK(errorOffset("{{vu()}}", "no arguments") == 2);
  CHECK(errorOffset("{{region()}}", "variable") == 2);
  CHECK(errorOffset("{{vu extra}}", "unexpected") == 5);
  CHECK(errorOffset("{{env(NAME)}}", "quoted") == 6);
  CHECK(errorOffset("{{accounts.user}}", "unknown name 'accounts.user'") == 2);
  CHECK(errorOffset("{{1abc}}", "expected a name") == 2);
}
