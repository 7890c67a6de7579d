#include "worker/request_render.h"

#include <algorithm>
#include <cctype>

namespace stampede::worker {

using common::Step;

namespace {

bool sameHeaderName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

} // namespace

void collectInherited(const common::HttpSpec& http, const std::vector<Step>& steps,
                      InheritedHeaders& out) {
  for (const Step& step : steps) {
    if (step.kind == Step::Kind::Loop)
      collectInherited(http, step.steps, out);
    if (step.kind != Step::Kind::Request)
      continue;
    auto& list = out[&step];
    for (size_t i = 0; i < http.headers.size(); ++i) {
      bool overridden = false;
      for (const auto& own : step.headers)
        overridden = overridden || sameHeaderName(own.first, http.headers[i].first);
      if (!overridden)
        list.push_back(i);
    }
  }
}

void appendEncoded(std::string& out, std::string_view text, bool form) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(char(c));
    } else if (form && c == ' ') {
      out.push_back('+');
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

namespace {

// A request target carries no raw space, control or non-ASCII byte (RFC 3986): a UTF-8 path
// from the scenario, a captured value or a Location header is sent percent-encoded. Scans
// only; copies only when there is something to encode.
void encodeUnsafeTargetBytes(std::string& target) {
  const auto unsafe = [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte <= 0x20 || byte >= 0x7f;
  };
  const auto first = std::find_if(target.begin(), target.end(), unsafe);
  if (first == target.end())
    return;
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out(target.begin(), first);
  for (auto it = first; it != target.end(); ++it) {
    if (!unsafe(*it)) {
      out.push_back(*it);
      continue;
    }
    const auto byte = static_cast<unsigned char>(*it);
    out.push_back('%');
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 15]);
  }
  target.swap(out);
}

} // namespace

void RenderedRequest::render(const common::Scenario& scenario, const std::vector<size_t>& inherited,
                             const Step& step, const common::RenderContext& ctx) {
  const common::Endpoint* endpoint = &scenario.target;

  render_buf.clear();
  step.url.renderTo(ctx, render_buf);
  target_buf.clear();
  if (step.url_absolute) {
    if (auto parsed = common::parseEndpoint(render_buf)) {
      setAbsolute(std::move(*parsed));
      endpoint = absolute.get();
      // parseEndpoint keeps the path of an absolute URL as its base path.
      target_buf.append(absolute->base_path.empty() ? "/" : absolute->base_path);
    }
  } else {
    target_buf.append(scenario.target.base_path);
    if (render_buf.empty() || render_buf.front() != '/')
      target_buf.push_back('/');
    target_buf.append(render_buf);
  }
  encodeUnsafeTargetBytes(target_buf);
  if (!step.query.empty()) {
    bool first = target_buf.find('?') == std::string::npos;
    for (const auto& [name, value] : step.query) {
      target_buf.push_back(first ? '?' : '&');
      first = false;
      appendEncoded(target_buf, name, false);
      target_buf.push_back('=');
      render_buf.clear();
      value.renderTo(ctx, render_buf);
      appendEncoded(target_buf, render_buf, false);
    }
  }

  // Names and inherited values change only with the step: copied then, not per request.
  if (headers_step != &step) {
    headers_step = &step;
    headers_buf.resize(inherited.size() + step.headers.size());
    size_t h = 0;
    for (size_t i : inherited) {
      headers_buf[h].first.assign(scenario.http.headers[i].first);
      headers_buf[h++].second.assign(scenario.http.headers[i].second);
    }
    for (const auto& header : step.headers)
      headers_buf[h++].first.assign(header.first);
  }
  size_t h = inherited.size();
  for (const auto& header : step.headers) {
    headers_buf[h].second.clear();
    header.second.renderTo(ctx, headers_buf[h++].second);
  }
  body_buf.clear();
  if (step.body) {
    step.body->renderTo(ctx, body_buf);
  } else if (!step.form.empty()) {
    for (const auto& [name, value] : step.form) {
      if (!body_buf.empty())
        body_buf.push_back('&');
      appendEncoded(body_buf, name, true);
      body_buf.push_back('=');
      render_buf.clear();
      value.renderTo(ctx, render_buf);
      appendEncoded(body_buf, render_buf, true);
    }
  }

  req.method = step.method;
  req.endpoint = endpoint;
  req.target = target_buf;
  req.headers = &headers_buf;
  req.body = body_buf;
  req.timeout = step.timeout.value_or(scenario.http.timeout);
  req.keep_body = readsBody(step);
}

void RenderedRequest::setAbsolute(common::Endpoint&& endpoint) {
  if (absolute)
    *absolute = std::move(endpoint); // in place: req.endpoint may point to it
  else
    absolute = std::make_unique<common::Endpoint>(std::move(endpoint));
}

void RenderedRequest::redirect(std::string_view location, int status) {
  std::string next(location);
  if (auto endpoint = common::parseEndpoint(next)) {
    setAbsolute(std::move(*endpoint));
    target_buf.assign(absolute->base_path.empty() ? "/" : absolute->base_path);
    req.endpoint = absolute.get();
  } else if (!next.empty() && next.front() == '/') {
    target_buf.assign(next);
  } else {
    // Relative to the current path's directory.
    const auto slash = target_buf.rfind('/', target_buf.find('?'));
    target_buf.resize(slash == std::string::npos ? 0 : slash + 1);
    target_buf.append(next);
  }
  encodeUnsafeTargetBytes(target_buf);
  req.target = target_buf;
  if (status == 303 ||
      ((status == 301 || status == 302) && req.method == std::string_view("POST"))) {
    req.method = "GET";
    req.body = {};
  }
}

std::string RenderedRequest::describeUrl(const common::Scenario& scenario, const Step& step,
                                         const common::RenderContext& ctx, int hops) const {
  const auto& endpoint = *req.endpoint;
  std::string url;
  if (hops > 0) {
    // The hop that failed, not the step's own URL.
    return endpoint.scheme + "://" + endpoint.host + ":" + std::to_string(endpoint.port) +
           std::string(req.target);
  }
  std::string masked_path;
  step.url.renderTo(ctx, masked_path, /*mask_secrets=*/true);
  if (step.url_absolute) {
    url = masked_path;
  } else {
    url = endpoint.scheme + "://" + endpoint.host + ":" + std::to_string(endpoint.port) +
          scenario.target.base_path +
          (masked_path.empty() || masked_path.front() != '/' ? "/" : "") + masked_path;
  }
  // Query values may carry secrets too: shown as the step renders them, masked.
  if (!step.query.empty()) {
    bool first = url.find('?') == std::string::npos;
    for (const auto& [name, value] : step.query) {
      url += first ? '?' : '&';
      first = false;
      appendEncoded(url, name, false);
      url += '=';
      std::string rendered;
      value.renderTo(ctx, rendered, /*mask_secrets=*/true);
      appendEncoded(url, rendered, false);
    }
  }
  return url;
}

} // namespace stampede::worker
