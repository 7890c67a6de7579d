// A `{{...}}` template compiled once at load and rendered per request without parsing.
// Variables and env() are resolved at compile time; built-ins are evaluated per render.
// compile() runs on the master (load time); render() on a load thread, allocation-free when
// `out` has capacity.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace stampede::common {

// What a render needs from the virtual user that renders it.
struct RenderContext {
  uint64_t vu = 0;        // unique across the cluster
  uint64_t iteration = 0; // of this virtual user
  uint32_t worker_index = 0;
  std::mt19937_64* rng = nullptr;     // the load thread's generator
  const std::string* slots = nullptr; // this virtual user's captured values and data columns
};

// Names whose values belong to a virtual user and change as it runs: captures (`token`) and
// data columns (`accounts.user`). The loader gives each a slot; a template refers to the slot,
// and a virtual user keeps one string per slot.
using SlotNames = std::map<std::string, uint32_t, std::less<>>;

// Thrown by compile(); `offset` is the byte offset in the template text of the problem.
class TemplateError : public std::runtime_error {
public:
  TemplateError(size_t offset, const std::string& message)
      : std::runtime_error(message), offset_(offset) {}
  size_t offset() const { return offset_; }

private:
  size_t offset_;
};

// Where env("NAME") is read: the process environment (on the master), or the values the
// master shipped (on a worker). Records every value read, so that the master can ship them.
struct EnvSource {
  const std::map<std::string, std::string>* shipped = nullptr; // null: the process environment
  std::map<std::string, std::string>* used = nullptr;
};

class Template {
public:
  Template() = default;

  // Names: a key of `variables`, or a built-in: uuid(), random_int(a, b), random_string(n),
  // now_ms(), env("NAME"), worker_index, vu, iteration. Anything else is a TemplateError.
  // With `slots`, a name found there renders the virtual user's value of that slot.
  static Template compile(std::string_view text,
                          const std::map<std::string, std::string>& variables,
                          const EnvSource& env = {}, const SlotNames* slots = nullptr);

  bool isConstant() const {
    return parts_.empty() || (parts_.size() == 1 && parts_[0].kind == Kind::Literal);
  }
  // Appends the rendered text. With `mask_secrets`, values that came from env() are "***".
  void renderTo(const RenderContext& ctx, std::string& out, bool mask_secrets = false) const;
  std::string render(const RenderContext& ctx, bool mask_secrets = false) const;
  const std::string& source() const { return source_; }
  // The slots this template reads, each once, in order of first use.
  const std::vector<uint32_t>& slotsUsed() const { return slots_used_; }

private:
  enum class Kind {
    Literal,
    Secret,
    Uuid,
    RandomInt,
    RandomString,
    NowMs,
    WorkerIndex,
    Vu,
    Iteration,
    Slot
  };
  struct Part {
    Kind kind = Kind::Literal;
    std::string text; // Literal and Secret
    int64_t a = 0;    // RandomInt low, RandomString length, Slot index
    int64_t b = 0;    // RandomInt high
  };
  std::vector<Part> parts_;
  std::vector<uint32_t> slots_used_;
  std::string source_;
};

// A built-in name of templates (uuid, env, vu, ...): variables and feeders may not take one.
bool isBuiltinName(std::string_view name);

} // namespace stampede::common
