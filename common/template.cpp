#include "common/template.h"

#include "common/text.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstdlib>

namespace stampede::common {

namespace {

constexpr std::string_view kOpen = "{{";
constexpr std::string_view kClose = "}}";
constexpr std::string_view kMask = "***";
// A body of random text larger than this is a typo (a missing unit, an extra digit), and
// render() must stay cheap enough to run per request.
constexpr int64_t kMaxRandomString = 1 << 20;

bool isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
bool isIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool isIdentChar(char c) {
  // Dots are accepted so that feeder columns (`accounts.user`) read as one name and are
  // reported as unknown rather than as a syntax error.
  return isIdentStart(c) || (c >= '0' && c <= '9') || c == '.';
}

// A cursor over the inside of one `{{ ... }}`; positions are absolute offsets into the
// template text so that every error can point at the exact byte.
class ExprParser {
public:
  ExprParser(std::string_view text, size_t begin, size_t end)
      : text_(text), pos_(begin), end_(end) {}

  size_t pos() const { return pos_; }
  void skipSpace() {
    while (pos_ < end_ && isSpace(text_[pos_]))
      ++pos_;
  }
  bool atEnd() {
    skipSpace();
    return pos_ >= end_;
  }
  bool consume(char c) {
    skipSpace();
    if (pos_ < end_ && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::string_view identifier() {
    skipSpace();
    const size_t start = pos_;
    if (pos_ < end_ && isIdentStart(text_[pos_])) {
      while (pos_ < end_ && isIdentChar(text_[pos_]))
        ++pos_;
    }
    return text_.substr(start, pos_ - start);
  }
  int64_t integer() {
    skipSpace();
    const size_t start = pos_;
    size_t i = pos_;
    if (i < end_ && (text_[i] == '-' || text_[i] == '+'))
      ++i;
    while (i < end_ && text_[i] >= '0' && text_[i] <= '9')
      ++i;
    // from_chars takes no '+', so skip it; the digits after it are still checked.
    const size_t digits = (start < end_ && text_[start] == '+') ? start + 1 : start;
    int64_t value = 0;
    const auto [ptr, ec] = std::from_chars(text_.data() + digits, text_.data() + i, value);
    if (ec == std::errc::result_out_of_range)
      throw TemplateError(start, "integer out of range");
    if (ec != std::errc() || ptr != text_.data() + i || i == digits)
      throw TemplateError(start, "expected an integer");
    pos_ = i;
    return value;
  }
  std::string stringLiteral() {
    skipSpace();
    if (pos_ >= end_ || (text_[pos_] != '"' && text_[pos_] != '\''))
      throw TemplateError(pos_, "expected a quoted string");
    const char quote = text_[pos_];
    const size_t close = text_.find(quote, pos_ + 1);
    if (close == std::string_view::npos || close >= end_)
      throw TemplateError(pos_, "unterminated string");
    std::string value(text_.substr(pos_ + 1, close - pos_ - 1));
    pos_ = close + 1;
    return value;
  }
  void expect(char c, const char* what) {
    if (!consume(c))
      throw TemplateError(pos_, std::string("expected ") + what);
  }

private:
  std::string_view text_;
  size_t pos_;
  size_t end_;
};

enum class Builtin { None, Uuid, RandomInt, RandomString, NowMs, Env, WorkerIndex, Vu, Iteration };

struct BuiltinName {
  std::string_view name;
  Builtin kind;
  std::string_view usage; // how it is written; empty for plain names
  bool isFunction() const { return !usage.empty(); }
};

constexpr BuiltinName kBuiltins[] = {
    {"uuid", Builtin::Uuid, "uuid()"},
    {"random_int", Builtin::RandomInt, "random_int(low, high)"},
    {"random_string", Builtin::RandomString, "random_string(n)"},
    {"now_ms", Builtin::NowMs, "now_ms()"},
    {"env", Builtin::Env, "env(\"NAME\")"},
    {"worker_index", Builtin::WorkerIndex, ""},
    {"vu", Builtin::Vu, ""},
    {"iteration", Builtin::Iteration, ""},
};

const BuiltinName* findBuiltin(std::string_view name) {
  for (const auto& b : kBuiltins)
    if (b.name == name)
      return &b;
  return nullptr;
}

std::string unknownNameMessage(std::string_view name,
                               const std::map<std::string, std::string>& variables,
                               const SlotNames* slots) {
  std::string message = "unknown name '" + std::string(name) + "'";
  std::string_view best;
  size_t best_distance = 3; // only suggest what is plausibly a typo
  auto consider = [&](std::string_view candidate) {
    const size_t d = editDistance(name, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = candidate;
    }
  };
  for (const auto& b : kBuiltins)
    consider(b.name);
  for (const auto& [key, value] : variables)
    consider(key);
  if (slots != nullptr)
    for (const auto& [key, index] : *slots)
      consider(key);
  if (!best.empty()) {
    // A function is suggested as it is written, arguments included.
    const BuiltinName* b = findBuiltin(best);
    const std::string_view suggestion = b != nullptr && b->isFunction() ? b->usage : best;
    message += " (did you mean '" + std::string(suggestion) + "'?)";
  }
  return message;
}

std::mt19937_64& fallbackRng() {
  // Only for callers that render without a load thread (reports, tests); seeded once per
  // thread so that two threads never share a generator.
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

template <typename Int> void appendInt(std::string& out, Int value) {
  std::array<char, 24> buf;
  const auto [ptr, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  out.append(buf.data(), size_t(ptr - buf.data()));
}

void appendUuid(std::string& out, std::mt19937_64& rng) {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & ~uint64_t(0xF000)) | uint64_t(0x4000);           // version 4
  lo = (lo & ~(uint64_t(0xC) << 60)) | (uint64_t(0x8) << 60); // variant 10xx
  std::array<char, 36> buf;
  size_t at = 0;
  auto put = [&](uint64_t word, int nibbles_from, int nibbles_to) {
    for (int n = nibbles_from; n < nibbles_to; ++n)
      buf[at++] = kHex[(word >> (60 - 4 * n)) & 0xF];
  };
  put(hi, 0, 8);
  buf[at++] = '-';
  put(hi, 8, 12);
  buf[at++] = '-';
  put(hi, 12, 16);
  buf[at++] = '-';
  put(lo, 0, 4);
  buf[at++] = '-';
  put(lo, 4, 16);
  out.append(buf.data(), buf.size());
}

void appendRandomString(std::string& out, int64_t length, std::mt19937_64& rng) {
  static constexpr char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  // Six bits per character from each 64-bit draw; values 62 and 63 are rejected so that
  // every character is equally likely.
  uint64_t bits = 0;
  int left = 0;
  int64_t produced = 0;
  while (produced < length) {
    if (left == 0) {
      bits = rng();
      left = 10;
    }
    const unsigned v = unsigned(bits & 63);
    bits >>= 6;
    --left;
    if (v < 62) {
      out.push_back(kAlphabet[v]);
      ++produced;
    }
  }
}

} // namespace

Template Template::compile(std::string_view text,
                           const std::map<std::string, std::string>& variables,
                           const EnvSource& env, const SlotNames* slots) {
  Template t;
  t.source_ = std::string(text);
  auto appendLiteral = [&t](std::string_view literal) {
    if (literal.empty())
      return;
    // Adjacent literals (text around a variable) merge, so that a template made only of text
    // and variables is one part and reports isConstant().
    if (!t.parts_.empty() && t.parts_.back().kind == Kind::Literal)
      t.parts_.back().text.append(literal);
    else
      t.parts_.push_back(Part{Kind::Literal, std::string(literal), 0, 0});
  };

  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find(kOpen, pos);
    if (open == std::string_view::npos) {
      appendLiteral(text.substr(pos));
      break;
    }
    appendLiteral(text.substr(pos, open - pos));
    const size_t close = text.find(kClose, open + kOpen.size());
    if (close == std::string_view::npos)
      throw TemplateError(open, "unclosed '{{' (no matching '}}')");
    const size_t nested = text.find(kOpen, open + kOpen.size());
    if (nested != std::string_view::npos && nested < close)
      throw TemplateError(open, "unclosed '{{' (another '{{' starts before '}}')");

    ExprParser p(text, open + kOpen.size(), close);
    if (p.atEnd())
      throw TemplateError(open, "empty '{{ }}'");
    const size_t name_at = p.pos();
    const std::string_view name = p.identifier();
    if (name.empty())
      throw TemplateError(name_at, "expected a name");
    const bool call = p.consume('(');
    const BuiltinName* builtin = findBuiltin(name);

    const auto slot = slots != nullptr ? slots->find(name) : SlotNames::const_iterator();
    if (slots != nullptr && slot != slots->end() && !builtin) {
      if (call)
        throw TemplateError(name_at, "'" + std::string(name) + "' is a value, not a function");
      Part part;
      part.kind = Kind::Slot;
      part.a = slot->second;
      t.parts_.push_back(std::move(part));
      if (std::find(t.slots_used_.begin(), t.slots_used_.end(), slot->second) ==
          t.slots_used_.end())
        t.slots_used_.push_back(slot->second);
    } else if (auto var = variables.find(std::string(name)); var != variables.end() && !builtin) {
      if (call)
        throw TemplateError(name_at, "'" + std::string(name) + "' is a variable, not a function");
      appendLiteral(var->second);
    } else if (builtin == nullptr) {
      throw TemplateError(name_at, unknownNameMessage(name, variables, slots));
    } else if (builtin->isFunction() && !call) {
      throw TemplateError(name_at, "'" + std::string(name) + "' is a function: write " +
                                       std::string(builtin->usage));
    } else if (!builtin->isFunction() && call) {
      throw TemplateError(name_at,
                          "'" + std::string(name) + "' takes no arguments: write it without ()");
    } else {
      Part part;
      switch (builtin->kind) {
      case Builtin::Uuid:
        part.kind = Kind::Uuid;
        break;
      case Builtin::NowMs:
        part.kind = Kind::NowMs;
        break;
      case Builtin::WorkerIndex:
        part.kind = Kind::WorkerIndex;
        break;
      case Builtin::Vu:
        part.kind = Kind::Vu;
        break;
      case Builtin::Iteration:
        part.kind = Kind::Iteration;
        break;
      case Builtin::RandomInt: {
        part.kind = Kind::RandomInt;
        const size_t a_at = p.pos();
        part.a = p.integer();
        p.expect(',', "',' and a second integer: random_int(low, high)");
        part.b = p.integer();
        if (part.a > part.b)
          throw TemplateError(a_at, "random_int(low, high) needs low <= high");
        break;
      }
      case Builtin::RandomString: {
        part.kind = Kind::RandomString;
        p.skipSpace();
        const size_t n_at = p.pos();
        part.a = p.integer();
        if (part.a < 1 || part.a > kMaxRandomString)
          throw TemplateError(n_at, "random_string(n) needs 1 <= n <= " +
                                        std::to_string(kMaxRandomString));
        break;
      }
      case Builtin::Env: {
        part.kind = Kind::Secret;
        p.skipSpace();
        const size_t arg_at = p.pos();
        const std::string var_name = p.stringLiteral();
        // Read once, on the master; workers get the value shipped, never their own environment.
        const char* value = nullptr;
        if (env.shipped) {
          auto it = env.shipped->find(var_name);
          value = it == env.shipped->end() ? nullptr : it->second.c_str();
        } else {
          value = std::getenv(var_name.c_str());
        }
        if (value == nullptr)
          throw TemplateError(arg_at, "environment variable '" + var_name + "' is not set");
        part.text = value;
        if (env.used)
          (*env.used)[var_name] = value;
        break;
      }
      case Builtin::None:
        break;
      }
      if (call)
        p.expect(')', "')'");
      t.parts_.push_back(std::move(part));
    }
    if (!p.atEnd())
      throw TemplateError(p.pos(), "unexpected text before '}}'");
    pos = close + kClose.size();
  }
  return t;
}

void Template::renderTo(const RenderContext& ctx, std::string& out, bool mask_secrets) const {
  for (const Part& part : parts_) {
    switch (part.kind) {
    case Kind::Literal:
      out.append(part.text);
      break;
    case Kind::Secret:
      out.append(mask_secrets ? kMask : std::string_view(part.text));
      break;
    case Kind::Uuid:
      appendUuid(out, ctx.rng ? *ctx.rng : fallbackRng());
      break;
    case Kind::RandomInt: {
      std::uniform_int_distribution<int64_t> dist(part.a, part.b);
      appendInt(out, dist(ctx.rng ? *ctx.rng : fallbackRng()));
      break;
    }
    case Kind::RandomString:
      appendRandomString(out, part.a, ctx.rng ? *ctx.rng : fallbackRng());
      break;
    case Kind::NowMs: {
      const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
      appendInt(out, std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count());
      break;
    }
    case Kind::WorkerIndex:
      appendInt(out, ctx.worker_index);
      break;
    case Kind::Vu:
      appendInt(out, ctx.vu);
      break;
    case Kind::Slot:
      if (ctx.slots != nullptr)
        out.append(ctx.slots[part.a]);
      break;
    case Kind::Iteration:
      appendInt(out, ctx.iteration);
      break;
    }
  }
}

std::string Template::render(const RenderContext& ctx, bool mask_secrets) const {
  std::string out;
  renderTo(ctx, out, mask_secrets);
  return out;
}

bool isBuiltinName(std::string_view name) {
  return findBuiltin(name) != nullptr;
}

} // namespace stampede::common
