// The head and body of an HTTP/1.1 request as the Beast engine sends it: the scenario's headers,
// plus Host, User-Agent and Accept-Encoding: gzip unless it names its own. Any thread.
#pragma once

#include "worker/http_client.h"

#include <string>
#include <string_view>

namespace stampede::worker {

// Writes `request` into the start of `into` (grown as needed, never shrunk, so that the steady
// state neither allocates nor zero-fills) and returns what it wrote. `keep_alive` false adds
// "Connection: close".
std::string_view writeHttp1Request(const HttpRequest& request, bool keep_alive, std::string& into);

} // namespace stampede::worker
