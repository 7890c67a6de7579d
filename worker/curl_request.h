// How a curl session's easy handle is set up: once with the client's settings (http.tls,
// keep-alive, version), then per request with the URL, method, body, header lines, HTTP version,
// limits and timeout. An option is set only when its value changes (curl copies or parses some,
// and each set is a pass through its option switch), and the header list is built in place: a
// virtual user that repeats its requests allocates nothing here. Load thread only.
#pragma once

#include "common/scenario.h"
#include "worker/http_client.h"

#include <curl/curl.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <vector>

namespace stampede::worker {

// Whether the environment names a proxy for curl to use (or to avoid): http_proxy, https_proxy,
// all_proxy, no_proxy, in either case. Without one, curl is told "no proxy" outright; else it
// reads five variables per transfer (getenv scans the whole environment: 5 % of the
// instructions of a request).
bool proxyInEnvironment();

// As the Beast engine decides whether to send Content-Length.
bool sendsBody(const HttpRequest& request);

class CurlRequestSetup {
public:
  CurlRequestSetup();
  ~CurlRequestSetup();
  CurlRequestSetup(const CurlRequestSetup&) = delete;
  CurlRequestSetup& operator=(const CurlRequestSetup&) = delete;

  // The settings every request of a client shares. `spec` outlives the easy handle (its PEM
  // blobs are not copied). `proxy_env`: proxyInEnvironment(), else curl looks for no proxy.
  void configure(CURL* easy, const common::HttpSpec& spec, bool proxy_env);
  // Sets `easy` up for `request`; false, with `detail`, when it cannot be sent. The lookup of
  // the host took `resolve_spent` of the request's timeout.
  bool apply(CURL* easy, const common::HttpSpec& spec, const HttpRequest& request,
             std::chrono::microseconds resolve_spent, std::string& detail);

private:
  // Hands curl the request's URL; false, with `detail`, when curl cannot parse it.
  bool setUrl(const HttpRequest& request, std::string& detail);
  void setHeaders(CURL* easy, const common::HttpSpec& spec, const HttpRequest& request);

  std::string url_;
  std::string last_url_;
  // The URL as curl's parsed handle (CURLOPT_CURLU): curl copies it per transfer instead of
  // parsing the URL string again (10 % of the instructions of a request).
  CURLU* url_handle_ = nullptr;
  std::string custom_method_; // what CURLOPT_CUSTOMREQUEST holds; empty: unset
  long http_version_ = -1;    // what CURLOPT_HTTP_VERSION holds
  bool forbid_reuse_ = false; // what CURLOPT_FORBID_REUSE holds
  // What the method options hold (HTTPGET, NOBODY): a virtual user mostly repeats one kind of
  // request, and each setopt costs curl a pass through its option switch.
  enum class MethodMode { Unset, Get, Head, Body };
  MethodMode method_mode_ = MethodMode::Unset;
  curl_off_t max_file_size_ = -1; // what CURLOPT_MAXFILESIZE_LARGE holds; -1: unset
  long content_decoding_ = -1;    // what CURLOPT_HTTP_CONTENT_DECODING holds; -1: unset
  long timeout_ms_ = -1;          // what CURLOPT_TIMEOUT_MS holds; -1: unset
  // Header lines back to back, NUL-terminated, and curl_slist nodes pointing into them: curl
  // only reads the list, and building it this way allocates nothing once capacity is there.
  std::string header_text_;
  std::vector<size_t> header_offsets_;
  std::vector<curl_slist> header_nodes_;
};

} // namespace stampede::worker
