#include "common/yaml_document.h"

#include "common/config_error.h"
#include "common/scenario.h"
#include "common/text.h"

#include <cstdio>
#include <sstream>
#include <vector>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>

namespace stampede::common {

namespace {

// Walks the documents of a YAML stream without building nodes, to find a second document and
// to stop where yaml-cpp 0.7 stalls: on some stray flow tokens (a ',' at the top level) its
// parser yields empty documents at the same position forever, so LoadAll never returns.
// It also enforces the limits that protect what is built from the text: nesting depth, and
// what aliases repeat. yaml-cpp shares an aliased node, but every walk of the tree (JSON
// bodies, steps) expands it, so 30 levels of 10 aliases would be 10^30 nodes.
class DocumentScan : public YAML::EventHandler {
public:
  explicit DocumentScan(const std::string& file_name) : file_name_(file_name) {}

  YAML::Mark doc_start;
  YAML::Mark first_node = YAML::Mark::null_mark();
  bool has_content = false; // anything but a lone null

  void OnDocumentStart(const YAML::Mark& mark) override {
    doc_start = mark;
    first_node = YAML::Mark::null_mark();
    has_content = false;
    open_.clear();
    anchored_.clear(); // anchors are numbered per document
    repeated_ = Size{};
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    node(mark, false);
    leaf(anchor, Size{1, 0});
  }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    node(mark, true);
    if (anchor >= anchored_.size() || !anchored_[anchor])
      fail(mark, "an alias inside the node its anchor names would repeat it without end");
    const Size size = *anchored_[anchor];
    repeated_.nodes += size.nodes;
    repeated_.bytes += size.bytes;
    if (repeated_.nodes > kMaxAliasNodes)
      fail(mark, "aliases repeat more than " + std::to_string(kMaxAliasNodes) +
                     " nodes in all, the limit (each *alias repeats all its &anchor holds, the "
                     "aliases inside included)");
    if (repeated_.bytes > kMaxAliasBytes)
      fail(mark, "aliases repeat more than " + std::to_string(kMaxAliasBytes >> 20) +
                     " MiB of text in all, the limit (each *alias repeats all its &anchor holds, "
                     "the aliases inside included)");
    leaf(0, size);
  }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                const std::string& value) override {
    node(mark, true);
    leaf(anchor, Size{1, value.size()});
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    node(mark, true);
    open(mark, anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    node(mark, true);
    open(mark, anchor);
  }
  void OnMapEnd() override { close(); }

private:
  // A node as every walk of the tree sees it: aliases expanded.
  struct Size {
    uint64_t nodes = 0;
    uint64_t bytes = 0; // of scalar text
  };
  struct Open {
    YAML::anchor_t anchor;
    Size size;
  };

  [[noreturn]] void fail(const YAML::Mark& mark, const std::string& message) const {
    throw ConfigError(file_name_, mark.line + 1, mark.column + 1, "", message);
  }
  void node(const YAML::Mark& mark, bool content) {
    if (first_node.is_null())
      first_node = mark;
    has_content = has_content || content;
  }
  void open(const YAML::Mark& mark, YAML::anchor_t anchor) {
    if (open_.size() >= size_t(kMaxNesting))
      fail(mark, "nested too deep: lists and mappings nest at most " + std::to_string(kMaxNesting) +
                     " levels");
    if (anchor != 0 && anchor >= anchored_.size())
      anchored_.resize(anchor + 1); // unset until closed: an alias to it now would recurse
    open_.push_back(Open{anchor, Size{1, 0}});
  }
  void close() {
    if (open_.empty())
      return;
    const Open done = open_.back();
    open_.pop_back();
    leaf(done.anchor, done.size);
  }
  // A finished node of `size`: counted in its parent, and remembered under its anchor.
  void leaf(YAML::anchor_t anchor, Size size) {
    if (anchor != 0) {
      if (anchor >= anchored_.size())
        anchored_.resize(anchor + 1);
      anchored_[anchor] = size;
    }
    if (!open_.empty()) {
      open_.back().size.nodes += size.nodes;
      open_.back().size.bytes += size.bytes;
    }
  }

  const std::string& file_name_;
  std::vector<Open> open_;                    // collections being read, outermost first
  std::vector<std::optional<Size>> anchored_; // by anchor id, once the anchored node is read
  Size repeated_;                             // by every alias of the document so far
};

// YAML allows tab, line feed and carriage return among the C0 controls, and no DEL; a NUL
// would otherwise be reported wherever the parser happens to trip over it.
void refuseControlCharacters(const std::string& text, const std::string& file_name) {
  // UTF-16 and UTF-32 (which yaml-cpp reads by their byte order mark) are full of NULs.
  const std::string_view start = std::string_view(text).substr(0, 4);
  if (start.substr(0, 2) == "\xFF\xFE" || start.substr(0, 2) == "\xFE\xFF" ||
      start == std::string_view("\0\0\xFE\xFF", 4))
    return;
  int line = 1;
  int column = 1;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", c);
      throw ConfigError(file_name, line, column, "",
                        std::string("control character ") + hex + (c == 0 ? " (NUL)" : "") +
                            " in the text: YAML does not allow it (inside double quotes, write "
                            "it as an escape such as \\x" +
                            std::string(hex + 2) + ")");
    }
    if (c == '\n' || (c == '\r' && (i + 1 == text.size() || text[i + 1] != '\n'))) {
      ++line;
      column = 1;
    } else if (c != '\r') {
      ++column;
    }
  }
}

} // namespace

[[noreturn]] void yamlError(const std::string& file_name, const YAML::Exception& e) {
  const bool known = !e.mark.is_null();
  std::string message = e.msg;
  // yaml-cpp says "bad file" when its own recursion limit trips (our scan stops sooner).
  if (dynamic_cast<const YAML::DeepRecursion*>(&e) != nullptr)
    message = "nested too deep: lists and mappings nest at most " + std::to_string(kMaxNesting) +
              " levels";
  // The usual cause: `{$.items[0].sku: 42}`, where YAML reads '[' as the start of a list.
  if (message == "end of map flow not found" || message == "end of sequence flow not found")
    message += " (inside {...} or [...], quote any text that holds [ ] { } or ,)";
  throw ConfigError(file_name, known ? e.mark.line + 1 : 0, known ? e.mark.column + 1 : 0, "",
                    message);
}

YAML::Node parseDocument(const std::string& text, const std::string& file_name) {
  refuseControlCharacters(text, file_name);
  try {
    std::istringstream stream(text);
    YAML::Parser parser(stream);
    DocumentScan scan(file_name);
    size_t documents = 0;
    int previous_start = -1;
    while (parser.HandleNextDocument(scan)) {
      if (documents > 0 && scan.doc_start.pos == previous_start) {
        const int pos = scan.doc_start.pos;
        const std::string what =
            pos >= 0 && size_t(pos) < text.size() ? "'" + text.substr(pos, 1) + "'" : "text";
        throw ConfigError(file_name, scan.doc_start.line + 1, scan.doc_start.column + 1, "",
                          "unexpected " + what + " (not valid YAML here)");
      }
      previous_start = scan.doc_start.pos;
      if (documents > 0 && scan.has_content)
        throw ConfigError(file_name, scan.first_node.line + 1, scan.first_node.column + 1, "",
                          "a scenario file holds one YAML document; found another here");
      ++documents;
    }
    // The stream is known to be well-formed now; build the first document's nodes.
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    yamlError(file_name, e);
  }
}

// What a node is, for "expected X, got Y".
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
  case YAML::NodeType::Null:
  case YAML::NodeType::Undefined:
    return "nothing";
  case YAML::NodeType::Scalar:
    return quoteValue(node.Scalar());
  case YAML::NodeType::Sequence:
    return "a list";
  case YAML::NodeType::Map:
    return "a mapping";
  }
  return "something else";
}

} // namespace stampede::common
