#include "worker/target_policy.h"

#include "common/asio.h"

#include <fmt/format.h>

#include <charconv>
#include <random>
#include <stdexcept>

namespace stampede::worker {
namespace {

using boost::asio::ip::address;

std::vector<address> resolve(const std::string& host, std::string& error) {
  boost::system::error_code ec;
  auto literal = boost::asio::ip::make_address(host, ec);
  if (!ec)
    return {literal};
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(host, "", ec);
  if (ec) {
    error = fmt::format("cannot resolve {}: {}", host, ec.message());
    return {};
  }
  std::vector<address> out;
  for (const auto& r : results)
    out.push_back(r.endpoint().address());
  return out;
}

bool inNetwork(const address& a, const address& base, int prefix) {
  if (a.is_v4() != base.is_v4())
    return false;
  auto compare = [prefix](const auto& x, const auto& y) {
    int bits = prefix;
    for (size_t i = 0; i < x.size() && bits > 0; ++i, bits -= 8) {
      const unsigned mask = bits >= 8 ? 0xffu : (0xffu << (8 - bits)) & 0xffu;
      if ((x[i] & mask) != (y[i] & mask))
        return false;
    }
    return true;
  };
  if (a.is_v4())
    return compare(a.to_v4().to_bytes(), base.to_v4().to_bytes());
  return compare(a.to_v6().to_bytes(), base.to_v6().to_bytes());
}

} // namespace

TargetPolicy TargetPolicy::parse(std::string_view list) {
  TargetPolicy policy;
  policy.text_ = std::string(list);
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    auto entry = list.substr(start, comma == list.npos ? list.npos : comma - start);
    start = comma == list.npos ? list.size() + 1 : comma + 1;
    while (!entry.empty() && entry.front() == ' ')
      entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ')
      entry.remove_suffix(1);
    if (entry.empty())
      throw std::invalid_argument("empty entry in the list");
    const auto slash = entry.find('/');
    boost::system::error_code ec;
    auto base = boost::asio::ip::make_address(std::string(entry.substr(0, slash)), ec);
    if (ec) {
      if (slash != entry.npos)
        throw std::invalid_argument(fmt::format("'{}' is not an address/prefix", entry));
      policy.names_.emplace_back(entry); // a host name, resolved when a scenario is checked
      continue;
    }
    int prefix = base.is_v4() ? 32 : 128;
    if (slash != entry.npos) {
      auto digits = entry.substr(slash + 1);
      auto [end, err] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
      if (err != std::errc() || end != digits.data() + digits.size() || prefix < 0 ||
          prefix > (base.is_v4() ? 32 : 128))
        throw std::invalid_argument(fmt::format("'{}': bad prefix length", entry));
    }
    policy.networks_.push_back({base, prefix});
  }
  return policy;
}

bool TargetPolicy::allows(const address& a) const {
  // An IPv4-mapped IPv6 address (::ffff:a.b.c.d) reaches an IPv4 host: judge it as one.
  if (a.is_v6() && a.to_v6().is_v4_mapped())
    return allows(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6()));
  for (const auto& n : networks_)
    if (inNetwork(a, n.base, n.prefix))
      return true;
  return false;
}

bool TargetPolicy::allowsResolving(const address& a) const {
  if (allows(a))
    return true;
  for (const auto& name : names_) {
    std::string ignored;
    for (const auto& resolved : resolve(name, ignored))
      if (resolved == a)
        return true;
  }
  return false;
}

TargetPolicy TargetPolicy::resolved() const {
  TargetPolicy out;
  out.text_ = text_;
  out.networks_ = networks_;
  for (const auto& name : names_) {
    std::string ignored;
    for (const auto& a : resolve(name, ignored))
      out.networks_.push_back({a, a.is_v4() ? 32 : 128});
  }
  return out;
}

std::string TargetPolicy::refusal(const address& a) const {
  return fmt::format("{} is outside --allow-target {}", a.to_string(), text_);
}

std::string TargetPolicy::checkHost(const std::string& host) const {
  std::string error;
  auto addresses = resolve(host, error);
  if (addresses.empty())
    return error.empty() ? fmt::format("{} has no address", host) : error;
  for (const auto& a : addresses)
    if (!allowsResolving(a))
      return fmt::format("target {} ({}) is outside --allow-target {}", host, a.to_string(), text_);
  return "";
}

std::string TargetPolicy::check(const common::Scenario& scenario) const {
  if (empty())
    return "";
  if (auto why = checkHost(scenario.target.host); !why.empty())
    return why;
  // Constant absolute step URLs: checked now too, so that a wrong scenario fails before load.
  // A templated one is checked on every connection it opens (allows()).
  std::mt19937_64 rng(1);
  common::RenderContext ctx;
  ctx.rng = &rng;
  std::function<std::string(const std::vector<common::Step>&)> walk =
      [&](const std::vector<common::Step>& steps) -> std::string {
    for (const auto& step : steps) {
      if (step.kind == common::Step::Kind::Loop) {
        if (auto why = walk(step.steps); !why.empty())
          return why;
      }
      if (step.kind != common::Step::Kind::Request || !step.url_absolute || !step.url.isConstant())
        continue;
      auto endpoint = common::parseEndpoint(step.url.render(ctx));
      if (!endpoint)
        return fmt::format("step URL {} cannot be checked", step.url.source());
      if (auto why = checkHost(endpoint->host); !why.empty())
        return why;
    }
    return "";
  };
  for (const auto& flow : scenario.flows)
    if (auto why = walk(flow.steps); !why.empty())
      return why;
  return "";
}

} // namespace stampede::worker
