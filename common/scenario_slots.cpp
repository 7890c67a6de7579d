#include "common/scenario_loader_internal.h"

namespace stampede::common::scenario_loader {

Template Loader::compileScalar(const YAML::Node& scalar, const std::string& path) {
  Template t;
  try {
    t = Template::compile(scalar.Scalar(), variables_, env_, &slots_);
  } catch (const TemplateError& e) {
    fail(markAt(scalar, e.offset()), path, e.what());
  }
  useSlots(t, path, [&](uint32_t slot) {
    return markAt(scalar, nameOffset(t.source(), slot_info_[slot].name));
  });
  return t;
}

std::string Loader::usedBeforeCapture(const std::string& name) const {
  for (const CaptureSite& site : flow_captures_[scope_->index])
    if (site.name == name)
      return "'" + name + "' is used before any step captures it (it is captured at line " +
             std::to_string(site.mark.line + 1) + ")";
  std::string message = "'" + name + "' is used but no step of this flow captures it";
  for (size_t k = 0; k < flow_captures_.size(); ++k)
    for (const CaptureSite& site : flow_captures_[k])
      if (site.name == name)
        return message + " (" + indexed("flows", k) + " does, at line " +
               std::to_string(site.mark.line + 1) +
               "; a flow cannot count on another having run before it)";
  return message;
}

uint32_t Loader::addSlot(const std::string& name, int feeder) {
  const auto [it, inserted] = slots_.emplace(name, uint32_t(slot_info_.size()));
  if (inserted)
    slot_info_.push_back(SlotInfo{name, feeder});
  return it->second;
}

std::string Loader::captureNameProblem(const std::string& name) const {
  if (!isIdentifier(name))
    return "a capture name is letters, digits and _, not starting with a digit";
  if (isBuiltinName(name))
    return "'" + name + "' is a built-in name; choose another";
  if (variables_.count(name))
    return "'" + name + "' is already a variable; a capture needs a name of its own";
  for (const Feeder& feeder : feeders_)
    if (feeder.name == name)
      return "'" + name + "' is already a data feeder; a capture needs a name of its own";
  return "";
}

YAML::Node Loader::child(const YAML::Node& map, std::string_view key) {
  if (map.IsMap())
    for (const auto& kv : map)
      if (kv.first.IsScalar() && kv.first.Scalar() == key)
        return kv.second;
  return YAML::Node(YAML::NodeType::Undefined);
}

void Loader::scanCaptures(const YAML::Node& flows) {
  if (!flows.IsSequence())
    return;
  flow_captures_.assign(flows.size(), {});
  for (size_t i = 0; i < flows.size(); ++i)
    scanSteps(child(flows[i], "steps"), i);
}

void Loader::scanSteps(const YAML::Node& steps, size_t flow) {
  if (!steps.IsSequence())
    return;
  for (const auto& step : steps) {
    if (!step.IsMap())
      continue;
    for (const auto& kv : step) {
      if (!kv.first.IsScalar())
        continue;
      if (kv.first.Scalar() == "steps")
        scanSteps(kv.second, flow);
      if (kv.first.Scalar() != "capture" || !kv.second.IsMap())
        continue;
      for (const auto& capture : kv.second) {
        if (!capture.first.IsScalar() || !captureNameProblem(capture.first.Scalar()).empty())
          continue;
        addSlot(capture.first.Scalar(), -1);
        flow_captures_[flow].push_back(CaptureSite{capture.first.Scalar(), capture.first.Mark()});
      }
    }
  }
}

std::string Loader::sample(const Template& t) {
  std::mt19937_64 rng(1);
  RenderContext ctx;
  ctx.rng = &rng;
  return t.render(ctx);
}

std::string Loader::namedFile(const Field& f, const std::string& path, const std::string& name) {
  if (options_.shipped_files != nullptr) {
    const auto it = options_.shipped_files->find(name);
    if (it == options_.shipped_files->end())
      fail(f, path, quoteValue(name) + " is not among the files the master shipped");
    files_[name] = it->second;
    return it->second;
  }
  std::filesystem::path where(name);
  if (where.is_relative())
    where = std::filesystem::path(file_).parent_path() / where;
  std::string problem;
  auto text = readWholeFile(where.string(), kMaxDataFileBytes, "a data or TLS file", problem);
  if (!text)
    fail(f, path, "cannot read " + quoteValue(where.string()) + ": " + problem);
  files_[name] = *text;
  return *text;
}

} // namespace stampede::common::scenario_loader
