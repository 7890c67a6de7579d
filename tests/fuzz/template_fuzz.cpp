// libFuzzer target: the template parser and renderer (common::Template). compile() either
// throws a TemplateError with an offset inside the text, or gives a template that renders.
// The first byte picks whether slots are known; the rest is the template text.
#include "common/template.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>

using stampede::common::Template;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0)
    return 0;
  static const std::map<std::string, std::string> kVariables{{"host", "example.test"}, {"n", "42"}};
  static const std::map<std::string, std::string> kEnv{{"TOKEN", "s3cret"}};
  static const stampede::common::SlotNames kSlots{{"token", 0}, {"accounts.user", 1}};
  static const std::string kSlotValues[] = {"abc", "alice"};
  const bool with_slots = data[0] & 1;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::map<std::string, std::string> used;
  stampede::common::EnvSource env{&kEnv, &used};
  try {
    Template t = Template::compile(text, kVariables, env, with_slots ? &kSlots : nullptr);
    std::mt19937_64 rng(size);
    stampede::common::RenderContext ctx;
    ctx.vu = 7;
    ctx.iteration = 3;
    ctx.rng = &rng;
    ctx.slots = kSlotValues;
    std::string out = t.render(ctx);
    std::string masked = t.render(ctx, true);
    for (uint32_t slot : t.slotsUsed())
      if (!with_slots || slot >= std::size(kSlotValues))
        __builtin_trap();
    // Rendering appends only, whatever is already in the buffer.
    std::string appended = "prefix";
    t.renderTo(ctx, appended);
    if (appended.rfind("prefix", 0) != 0)
      __builtin_trap();
    (void)out;
    (void)masked;
  } catch (const stampede::common::TemplateError& e) {
    if (e.offset() > text.size() || std::string(e.what()).empty())
      __builtin_trap();
  }
  return 0;
}
