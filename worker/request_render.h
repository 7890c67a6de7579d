// Rendering a request step into what goes on the wire: the target (URL, query), the headers
// (http.headers the step does not override, then the step's) and the body (raw or form), into
// buffers that a virtual user reuses request after request; and the next hop of a redirect.
// Pure: no clock, no socket. Called on the virtual user's load thread.
#pragma once

#include "common/scenario.h"
#include "common/template.h"
#include "worker/http_client.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace stampede::worker {

// Per request step: the indices of the http.headers entries that the step does not override
// (by name, case-insensitively), so that no header goes out twice.
using InheritedHeaders = std::unordered_map<const common::Step*, std::vector<size_t>>;
// Adds every request step of `steps` (loops included) to `out`.
void collectInherited(const common::HttpSpec& http, const std::vector<common::Step>& steps,
                      InheritedHeaders& out);

// Percent-encoding of a query or form value: unreserved characters stay, the rest is %XX
// (a form encodes a space as '+').
void appendEncoded(std::string& out, std::string_view text, bool form);

inline bool isRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

// Whether judging the step's response reads its body: then the client keeps it whole (up to
// http.max_body); otherwise it only counts it. A few tests, cheaper than a lookup per request.
inline bool readsBody(const common::Step& step) {
  if (step.expect.body_contains || !step.expect.json.empty())
    return true;
  for (const auto& capture : step.captures)
    if (capture.kind != common::Capture::Kind::Header)
      return true;
  return false;
}

// One virtual user's request: `req` and the buffers its views point into. No allocation once
// the buffers have grown to the step's size.
struct RenderedRequest {
  // Renders `step` into req. `inherited` is the step's entry of InheritedHeaders.
  void render(const common::Scenario& scenario, const std::vector<size_t>& inherited,
              const common::Step& step, const common::RenderContext& ctx);
  // The next hop after a redirect answered with `status`: Location is absolute (another
  // endpoint, maybe), a path, or relative to the current path's directory. 303, and 301/302
  // after a POST, continue as a GET without a body (what browsers do).
  void redirect(std::string_view location, int status);
  // For an error report (cold path): the URL of the request, secrets masked; after a
  // redirect (`hops` > 0), the hop's.
  std::string describeUrl(const common::Scenario& scenario, const common::Step& step,
                          const common::RenderContext& ctx, int hops) const;

  // Keeps `endpoint` in `absolute` (reused, so that req.endpoint stays valid).
  void setAbsolute(common::Endpoint&& endpoint);

  HttpRequest req;
  std::string target_buf;
  std::string render_buf;
  std::string body_buf;
  HeaderList headers_buf;
  const common::Step* headers_step = nullptr; // whose names and constant values headers_buf holds
  // An absolute URL's endpoint, made by the first one (most users never meet one: a pointer, not
  // an Endpoint in every user).
  std::unique_ptr<common::Endpoint> absolute;
};

} // namespace stampede::worker
