// The loader's room for message-broker load: `messaging:`, `publish:` and `subscribe:` steps,
// and `users:` on flows (a pinned role per virtual user).
#include "common/scenario_loader_internal.h"

namespace stampede::common::scenario_loader {

namespace {

// "tcp://host:port" or "stomp://host:port"; over TLS "ssl://host:port" or "stomp+ssl://...".
std::optional<BrokerUrl> parseBrokerUrl(std::string_view text) {
  const size_t scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos)
    return std::nullopt;
  const std::string_view scheme = text.substr(0, scheme_end);
  const bool tls = scheme == "ssl" || scheme == "stomp+ssl";
  if (!tls && scheme != "tcp" && scheme != "stomp")
    return std::nullopt;
  const std::string_view rest = text.substr(scheme_end + 3);
  const size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return std::nullopt;
  std::string_view host = rest.substr(0, colon);
  if (host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string_view port_text = rest.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535 || host.empty() || host.find_first_of("/ ") != std::string_view::npos)
    return std::nullopt;
  return BrokerUrl{std::string(host), uint16_t(port), tls, std::string(text)};
}

} // namespace

// `heartbeat: 10s` (send and receive), or {send: 5s, receive: 10s, tolerance: 2}.
HeartbeatSpec Loader::heartbeat(const Field& f) {
  const std::string path = "messaging.heartbeat";
  HeartbeatSpec spec;
  if (f.value.IsScalar()) {
    spec.send = spec.receive = duration(f, path, false);
  } else {
    const Fields hf = mapping(f, path, {"send", "receive", "tolerance"});
    if (const Field* x = hf.find("send"))
      spec.send = duration(*x, join(path, "send"), false);
    if (const Field* x = hf.find("receive"))
      spec.receive = duration(*x, join(path, "receive"), false);
    if (const Field* x = hf.find("tolerance")) {
      spec.tolerance = positiveNumber(*x, join(path, "tolerance"));
      if (spec.tolerance < 1 || spec.tolerance > 100)
        fail(*x, join(path, "tolerance"), "must be 1 to 100 (times the broker's interval)");
    }
  }
  // STOMP heart-beats are whole milliseconds; below 100 ms a busy load thread would be late.
  for (auto [value, name] : {std::pair{spec.send, "send"}, std::pair{spec.receive, "receive"}})
    if (value.count() > 0 &&
        (value < std::chrono::milliseconds(100) || value > std::chrono::hours(1)))
      fail(f, f.value.IsScalar() ? path : join(path, name),
           "a heart-beat interval is 0 (none) or 100ms to 1h");
  return spec;
}

MessagingSpec Loader::messaging(const Field& f) {
  const Fields fields = mapping(f, "messaging",
                                {"protocol", "urls", "reconnect", "client_id", "user", "password",
                                 "heartbeat", "tls", "start_barrier"});
  requireKeys(f.value, "messaging", fields, {"urls"});
  MessagingSpec spec;
  if (const Field* p = fields.find("protocol"))
    spec.protocol = choice<MessagingSpec::Protocol>(*p, "messaging.protocol",
                                                    {{"stomp", MessagingSpec::Protocol::Stomp}});
  if (const Field* b = fields.find("start_barrier")) {
    if (b->value.IsScalar() && b->value.Scalar() == "off")
      spec.start_barrier.reset();
    else if (b->value.IsScalar() && !parseDuration(b->value.Scalar()))
      fail(*b, "messaging.start_barrier",
           "expected a duration like 30s (the longest wait for every subscription) or off, got " +
               quoteValue(b->value.Scalar()));
    else
      spec.start_barrier = duration(*b, "messaging.start_barrier", true);
  }
  const Field& urls = *fields.find("urls");
  if (urls.value.IsScalar()) {
    // "tcp://a:61613,tcp://b:61613", as JMS users write a failover list.
    const std::string text = string(urls, "messaging.urls");
    size_t start = 0;
    while (start <= text.size()) {
      size_t comma = text.find(',', start);
      if (comma == std::string::npos)
        comma = text.size();
      const std::string item(trim(std::string_view(text).substr(start, comma - start)));
      const auto url = parseBrokerUrl(item);
      if (!url)
        fail(urls, "messaging.urls",
             "expected tcp://host:port or ssl://host:port (a comma-separated failover "
             "list), got " +
                 quoteValue(item));
      spec.urls.push_back(*url);
      start = comma + 1;
    }
  } else if (urls.value.IsSequence() && urls.value.size() > 0) {
    for (size_t i = 0; i < urls.value.size(); ++i) {
      const Field item{"", urls.value[i], urls.value[i]};
      const std::string path = indexed("messaging.urls", i);
      const auto url = parseBrokerUrl(string(item, path));
      if (!url)
        fail(item, path,
             "expected tcp://host:port or ssl://host:port, got " + quoteValue(string(item, path)));
      spec.urls.push_back(*url);
    }
  } else {
    fail(urls, "messaging.urls",
         "expected a list of broker URLs like [tcp://a:61613, tcp://b:61613], got " +
             describe(urls.value));
  }
  if (const Field* r = fields.find("reconnect")) {
    const std::string path = "messaging.reconnect";
    const Fields rf = mapping(*r, path, {"delay", "multiplier", "max_delay", "attempts", "budget"});
    if (const Field* x = rf.find("delay"))
      spec.reconnect.delay = duration(*x, join(path, "delay"), false);
    if (const Field* x = rf.find("multiplier")) {
      spec.reconnect.multiplier = positiveNumber(*x, join(path, "multiplier"));
      if (spec.reconnect.multiplier < 1)
        fail(*x, join(path, "multiplier"), "must be at least 1");
    }
    if (const Field* x = rf.find("max_delay"))
      spec.reconnect.max_delay = duration(*x, join(path, "max_delay"), false);
    if (const Field* x = rf.find("attempts")) {
      const int64_t n = integer(x->value, markOf(*x), join(path, "attempts"), "an integer");
      if (n < 0 || n > 1000000)
        fail(*x, join(path, "attempts"), "must be 0 (no limit) to 1000000");
      spec.reconnect.attempts = int(n);
    }
    if (const Field* x = rf.find("budget"))
      spec.reconnect.budget = duration(*x, join(path, "budget"), true);
    if (spec.reconnect.max_delay < spec.reconnect.delay)
      fail(*r, path, "max_delay must not be below delay");
  }
  if (const Field* c = fields.find("client_id")) {
    if (!c->value.IsScalar())
      fail(*c, "messaging.client_id", "expected a template like \"orders-{{vu}}\"");
    spec.client_id = compileScalar(c->value, "messaging.client_id");
    if (spec.client_id.source().empty())
      fail(*c, "messaging.client_id", "must not be empty (leave it out to send none)");
  }
  if (const Field* u = fields.find("user")) {
    if (!u->value.IsScalar())
      fail(*u, "messaging.user", "expected a string, got " + describe(u->value));
    spec.user = compileScalar(u->value, "messaging.user");
  }
  if (const Field* p = fields.find("password")) {
    if (!p->value.IsScalar())
      fail(*p, "messaging.password", "expected a string, got " + describe(p->value));
    spec.password = compileScalar(p->value, "messaging.password");
  }
  if (const Field* h = fields.find("heartbeat"))
    spec.heartbeat = heartbeat(*h);
  // Without tls: the system's authorities, verified (as http.tls's defaults).
  if (const Field* t = fields.find("tls")) {
    spec.tls = tlsSpec(*t, "messaging.tls");
    if (std::none_of(spec.urls.begin(), spec.urls.end(), [](const BrokerUrl& u) { return u.tls; }))
      fail(*t, "messaging.tls", "no URL of messaging.urls is ssl://host:port or stomp+ssl://");
  }
  return spec;
}

Destination Loader::destination(const Field& f, const std::string& path) const {
  const std::string text = string(f, path);
  Destination d;
  if (text.rfind("topic://", 0) == 0) {
    d.topic = true;
    d.name = text.substr(8);
  } else if (text.rfind("queue://", 0) == 0) {
    d.name = text.substr(8);
  } else {
    fail(f, path, "expected queue://name or topic://name, got " + quoteValue(text));
  }
  if (d.name.empty() || d.name.find_first_of(" \t\r\n/,") != std::string::npos)
    fail(f, path, "a destination name is not empty and has no spaces, '/' or ','");
  return d;
}

void Loader::addStatsRow(Step& s, const std::string& key, const std::string& method) {
  auto [it, inserted] = stats_index_.emplace(key, step_table_.size());
  if (inserted)
    step_table_.push_back(StepInfo{key, method});
  s.stats_index = it->second;
  if (!scope_->first_request)
    scope_->first_request = s.stats_index;
}

void Loader::publishStep(Step& s, const Field& action, const Fields& fields,
                         const std::string& path) {
  const std::string p = join(path, "publish");
  if (!messaging_)
    fail(action.key.Mark(), p, "a publish step needs a messaging: section (the brokers)");
  const Fields pf =
      mapping(action, p, {"to", "body", "properties", "persistent", "confirm", "timeout"});
  requireKeys(action.value, p, pf, {"to"});
  auto spec = std::make_shared<PublishSpec>();
  spec->to = destination(*pf.find("to"), join(p, "to"));
  if (const Field* b = pf.find("body")) {
    if (!b->value.IsScalar())
      fail(*b, join(p, "body"),
           "expected a text (messages are text only), got " + describe(b->value));
    spec->body = compileScalar(b->value, join(p, "body"));
  }
  if (const Field* props = pf.find("properties")) {
    spec->properties = templateMap(*props, join(p, "properties"), "property names to values");
    for (const auto& [name, value] : spec->properties)
      if (!isIdentifier(name) || name.rfind("stampede_", 0) == 0 || name.rfind("JMS", 0) == 0)
        fail(*props, join(join(p, "properties"), name),
             "a JMS property name is a Java identifier, not starting with JMS or stampede_, got " +
                 quoteValue(name));
  }
  if (const Field* x = pf.find("persistent"))
    spec->persistent = boolean(*x, join(p, "persistent"));
  if (const Field* x = pf.find("confirm"))
    spec->confirm = boolean(*x, join(p, "confirm"));
  if (const Field* x = pf.find("timeout"))
    spec->timeout = duration(*x, join(p, "timeout"), true);
  s.kind = Step::Kind::Publish;
  std::string key = "PUBLISH " + spec->to.text();
  if (const Field* name = fields.find("name"))
    key = nonEmptyString(*name, join(path, "name"));
  s.publish = std::move(spec);
  addStatsRow(s, key, "PUBLISH");
}

void Loader::subscribeStep(Step& s, const Field& action, const Fields& fields,
                           const std::string& path) {
  const std::string p = join(path, "subscribe");
  if (!messaging_)
    fail(action.key.Mark(), p, "a subscribe step needs a messaging: section (the brokers)");
  const Fields sf = mapping(
      action, p, {"from", "durable", "ack", "prefetch", "receive", "timeout", "expect", "on_end"});
  requireKeys(action.value, p, sf, {"from"});
  auto spec = std::make_shared<SubscribeSpec>();
  spec->from = destination(*sf.find("from"), join(p, "from"));
  if (const Field* d = sf.find("durable")) {
    if (!spec->from.topic)
      fail(*d, join(p, "durable"), "only a topic:// subscription can be durable");
    if (messaging_->client_id.source().empty())
      fail(*d, join(p, "durable"),
           "a durable subscription needs messaging.client_id (the broker keys it by both)");
    if (!d->value.IsScalar())
      fail(*d, join(p, "durable"), "expected a name template like \"sub-{{vu}}\"");
    spec->durable = compileScalar(d->value, join(p, "durable"));
  }
  if (const Field* a = sf.find("ack"))
    spec->ack = choice<SubscribeSpec::Ack>(
        *a, join(p, "ack"),
        {{"auto", SubscribeSpec::Ack::Auto}, {"client", SubscribeSpec::Ack::Client}});
  if (const Field* x = sf.find("prefetch"))
    spec->prefetch = positiveInt(*x, join(p, "prefetch"));
  if (const Field* x = sf.find("receive"))
    spec->receive = positiveInt(*x, join(p, "receive"));
  if (const Field* x = sf.find("timeout"))
    spec->timeout = duration(*x, join(p, "timeout"), true);
  if (const Field* e = sf.find("expect")) {
    const Fields ef = mapping(*e, join(p, "expect"), {"body_contains", "max_latency"});
    if (const Field* x = ef.find("body_contains"))
      spec->expect_body = string(*x, join(join(p, "expect"), "body_contains"));
    if (const Field* x = ef.find("max_latency"))
      spec->max_latency = duration(*x, join(join(p, "expect"), "max_latency"), true);
  }
  if (const Field* x = sf.find("on_end"))
    spec->on_end = choice<SubscribeSpec::OnEnd>(
        *x, join(p, "on_end"),
        {{"keep", SubscribeSpec::OnEnd::Keep}, {"unsubscribe", SubscribeSpec::OnEnd::Unsubscribe}});
  s.kind = Step::Kind::Subscribe;
  std::string key = "SUBSCRIBE " + spec->from.text();
  if (const Field* name = fields.find("name"))
    key = nonEmptyString(*name, join(path, "name"));
  s.subscribe = std::move(spec);
  addStatsRow(s, key, "SUBSCRIBE");
}

std::vector<std::string> Loader::messagingWarnings(const MessagingSpec& spec,
                                                   const std::vector<LoadGroup>& groups) {
  std::vector<std::string> out;
  static const std::regex kVu(R"(\{\{\s*vu\s*\}\})");
  const std::string& id = spec.client_id.source();
  const bool many =
      groups.size() > 1 || std::any_of(groups.begin(), groups.end(),
                                       [](const auto& g) { return g.open() || g.load.peak() > 1; });
  if (!id.empty() && many && !std::regex_search(id, kVu))
    out.push_back("messaging.client_id " + quoteValue(id) +
                  " has no {{vu}}: virtual users may share one client id, and the broker "
                  "refuses a second connection with it (client_id_in_use)");
  return out;
}

void Loader::pinFlows(std::vector<Flow>& flows, const LoadSpec& load,
                      const Field& flows_field) const {
  const size_t pinned =
      size_t(std::count_if(flows.begin(), flows.end(), [](const Flow& f) { return f.users > 0; }));
  if (pinned == 0)
    return;
  if (pinned != flows.size())
    fail(flows_field, "flows",
         "either every flow has users: (each user keeps its flow) or none (picked by weight); "
         "a flow with a load: of its own takes no users:");
  if (load.model != LoadSpec::Model::Closed)
    fail(flows_field, "flows",
         "users: on flows needs the closed model (load.users); for an open-model flow, give "
         "every flow a load: of its own instead");
  uint64_t sum = 0;
  for (Flow& f : flows) {
    f.first_user = sum;
    sum += f.users;
  }
  if (double(sum) != load.peak())
    fail(flows_field, "flows",
         "the flows' users add up to " + std::to_string(sum) + ", but load.users is " +
             std::to_string(uint64_t(load.peak())) + " (they must be equal)");
}

} // namespace stampede::common::scenario_loader
