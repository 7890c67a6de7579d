#include "worker/curl_request.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string_view>
#include <strings.h>

#ifndef STAMPEDE_VERSION
#define STAMPEDE_VERSION "dev"
#endif

namespace stampede::worker {
namespace {

// Near a typical API response; curl's default is the same, but we say it so nobody raises it
// (it is allocated per easy handle).
constexpr long kBufferSize = 16 * 1024;
constexpr std::string_view kUserAgent = "User-Agent: stampede/" STAMPEDE_VERSION;

// libcurl before 8.0.0 (Debian 12 has 7.88.1) fails every request that reuses an h2c connection
// it opened with prior knowledge: "Error in the HTTP2 framing layer" (curl issue #10634). There
// each h2c request gets a connection of its own; h2 over TLS is not affected.
bool h2cReuseBroken() {
  static const bool broken = curl_version_info(CURLVERSION_NOW)->version_num < 0x080000;
  return broken;
}

} // namespace

bool proxyInEnvironment() {
  for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                           "ALL_PROXY", "no_proxy", "NO_PROXY"})
    if (std::getenv(name))
      return true;
  return false;
}

bool sendsBody(const HttpRequest& request) {
  return !request.body.empty() || request.method == "POST" || request.method == "PUT" ||
         request.method == "PATCH";
}

CurlRequestSetup::CurlRequestSetup() : url_handle_(curl_url()) {
  if (!url_handle_)
    throw std::runtime_error("curl_url failed");
}

CurlRequestSetup::~CurlRequestSetup() {
  curl_url_cleanup(url_handle_);
}

void CurlRequestSetup::configure(CURL* easy, const common::HttpSpec& spec, bool proxy_env) {
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L); // -21 % without: curl blocks SIGPIPE per call
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, kBufferSize);
  curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
  forbid_reuse_ = !spec.keep_alive;
  curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, forbid_reuse_ ? 1L : 0L);
  // Send the target as the scenario wrote it, as the Beast engine does.
  curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
  // Redirects are the engine's (http.follow_redirects), which judges and times every hop.
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
  // Sends "Accept-Encoding: gzip" (unless the request has its own) and decodes the body.
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "gzip");
  if (spec.version == common::HttpSpec::Version::Http1) {
    // curl's default for https is HTTP/2 where the server offers it.
    http_version_ = CURL_HTTP_VERSION_1_1;
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, http_version_);
  }
  // TLS (http.tls). The PEM blobs are not copied: the spec outlives the client and its handles.
  const auto& tls = spec.tls;
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, tls.verify ? 1L : 0L);
  curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, tls.verify ? 2L : 0L);
  auto blob = [](const std::string& pem) {
    return curl_blob{const_cast<char*>(pem.data()), pem.size(), CURL_BLOB_NOCOPY};
  };
  if (!tls.ca_pem.empty()) {
    curl_blob ca = blob(tls.ca_pem); // replaces the system's authorities, as in the Beast engine
    curl_easy_setopt(easy, CURLOPT_CAINFO_BLOB, &ca);
  }
  if (!tls.cert_pem.empty()) {
    curl_blob cert = blob(tls.cert_pem);
    curl_blob key = blob(tls.key_pem.empty() ? tls.cert_pem : tls.key_pem);
    curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
  }
  // Debian's libcurl verifies against both the CA bundle and /etc/ssl/certs; with a CA path
  // set, curl 7.88 does not cache the parsed store and re-reads ~140 certificates for every
  // TLS connection (17 ms of CPU each). The bundle alone holds the same authorities and is
  // cached per multi handle.
  curl_easy_setopt(easy, CURLOPT_CAPATH, static_cast<char*>(nullptr));
  if (!proxy_env) {
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "");
  }
  curl_easy_setopt(easy, CURLOPT_CURLU, url_handle_);
}

bool CurlRequestSetup::apply(CURL* easy, const common::HttpSpec& spec, const HttpRequest& request,
                             std::chrono::microseconds resolve_spent, std::string& detail) {
  if (!request.endpoint) {
    detail = "request without an endpoint";
    return false;
  }
  if (!setUrl(request, detail))
    return false;

  const auto& endpoint = *request.endpoint;
  if (spec.version == common::HttpSpec::Version::Http2) {
    // h2 where TLS's ALPN offers it; without TLS, h2c with prior knowledge (no Upgrade dance).
    const bool tls = endpoint.tls();
    long version = tls ? CURL_HTTP_VERSION_2TLS : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    if (version != http_version_) {
      http_version_ = version;
      curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, http_version_);
    }
    const bool forbid_reuse = !spec.keep_alive || (!tls && h2cReuseBroken());
    if (forbid_reuse != forbid_reuse_) {
      forbid_reuse_ = forbid_reuse;
      curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, forbid_reuse_ ? 1L : 0L);
    }
  }

  const auto method = request.method;
  const bool has_body = sendsBody(request);
  std::string_view custom; // CUSTOMREQUEST: empty when curl's own method word is right
  if (method == "HEAD") {
    if (method_mode_ != MethodMode::Head) {
      method_mode_ = MethodMode::Head;
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    }
  } else if (has_body) {
    if (method_mode_ != MethodMode::Body) {
      method_mode_ = MethodMode::Body;
      curl_easy_setopt(easy, CURLOPT_NOBODY, 0L);
    }
    // POSTFIELDS does not copy: the body view is valid until perform() completes.
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body.size()));
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request.body.empty() ? "" : request.body.data());
    if (method != "POST")
      custom = method;
  } else {
    if (method_mode_ != MethodMode::Get) {
      method_mode_ = MethodMode::Get;
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L); // also undoes NOBODY and POSTFIELDS
    }
    if (method != "GET")
      custom = method;
  }
  // curl copies the string on every set; most virtual users repeat one method.
  if (custom != custom_method_) {
    custom_method_.assign(custom);
    curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST,
                     custom_method_.empty() ? static_cast<char*>(nullptr) : custom_method_.c_str());
  }
  setHeaders(easy, spec, request);

  // The body limits, as the Beast engine's: a declared length over the cap fails at once
  // (CURLE_FILESIZE_EXCEEDED), a longer body as it arrives (CurlResponse).
  const curl_off_t max_file_size = request.keep_body ? static_cast<curl_off_t>(spec.max_body) : 0;
  if (max_file_size != max_file_size_) {
    max_file_size_ = max_file_size;
    curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, max_file_size_);
  }
  // As the Beast engine: a body nobody reads is not inflated (nor checked), only counted.
  const long decoding = request.keep_body ? 1L : 0L;
  if (decoding != content_decoding_) {
    content_decoding_ = decoding;
    curl_easy_setopt(easy, CURLOPT_HTTP_CONTENT_DECODING, content_decoding_);
  }

  // What the lookup left of the request's timeout (resolve_spent is under it).
  long timeout_ms = static_cast<long>((request.timeout.count() + 999) / 1000);
  if (timeout_ms > 0 && resolve_spent.count() > 0)
    timeout_ms = std::max(1L, static_cast<long>((request.timeout - resolve_spent).count() / 1000));
  if (timeout_ms != timeout_ms_) {
    timeout_ms_ = timeout_ms;
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms_); // 0: none
  }
  return true;
}

bool CurlRequestSetup::setUrl(const HttpRequest& request, std::string& detail) {
  const auto& endpoint = *request.endpoint;
  url_.clear();
  url_.append(endpoint.scheme);
  url_.append("://");
  bool ipv6 = endpoint.host.find(':') != std::string::npos && endpoint.host.front() != '[';
  if (ipv6)
    url_.push_back('[');
  url_.append(endpoint.host);
  if (ipv6)
    url_.push_back(']');
  char port[8];
  auto port_end = std::to_chars(port, port + sizeof port, endpoint.port).ptr;
  url_.push_back(':');
  url_.append(port, port_end);
  url_.append(request.target.empty() ? std::string_view("/") : request.target);
  // Parsed only when it changes; a virtual user mostly repeats the same URL. The flags are the
  // ones curl gives a CURLOPT_URL string (with PATH_AS_IS: the target as the scenario wrote it).
  // The easy handle holds url_handle_ since configure(), and copies it per transfer.
  if (url_ != last_url_) {
    CURLUcode uc = curl_url_set(url_handle_, CURLUPART_URL, url_.c_str(),
                                CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
    if (uc != CURLUE_OK) {
      detail = "bad URL: " + url_ + " (" + curl_url_strerror(uc) + ")";
      last_url_.clear();
      return false;
    }
    last_url_ = url_;
  }
  return true;
}

void CurlRequestSetup::setHeaders(CURL* easy, const common::HttpSpec& spec,
                                  const HttpRequest& request) {
  header_text_.clear();
  header_offsets_.clear();
  auto add = [this](std::string_view a, std::string_view b = {}, char sep = ':') {
    header_offsets_.push_back(header_text_.size());
    header_text_.append(a);
    if (sep) {
      header_text_.push_back(sep);
      if (sep == ':' && !b.empty())
        header_text_.push_back(' ');
    }
    header_text_.append(b);
    header_text_.push_back('\0');
  };
  bool has_content_type = false;
  bool has_user_agent = false;
  bool has_accept = false;
  if (request.headers) {
    for (const auto& [name, value] : *request.headers) {
      has_content_type |= strcasecmp(name.c_str(), "Content-Type") == 0;
      has_user_agent |= strcasecmp(name.c_str(), "User-Agent") == 0;
      has_accept |= strcasecmp(name.c_str(), "Accept") == 0;
      // curl drops "Name:" (empty value) from the request; "Name;" sends it empty.
      if (value.empty())
        add(name, {}, ';');
      else
        add(name, value);
    }
  }
  if (!has_user_agent)
    add(kUserAgent, {}, 0);
  // curl would wait up to a second for "100 Continue" before sending a large body. Only then:
  // every line in the list costs curl a compare per header it considers adding.
  const bool has_body = sendsBody(request);
  if (has_body)
    add("Expect");
  // The same head as the Beast engine sends: curl's default "Accept: */*" and the form type it
  // gives a POSTFIELDS body go unless the scenario set them.
  if (!has_accept)
    add("Accept");
  if (!has_content_type && has_body)
    add("Content-Type");
  // HTTP/2 has no Connection field: there FORBID_REUSE alone opens a connection per request.
  if (!spec.keep_alive && spec.version == common::HttpSpec::Version::Http1)
    add("Connection", "close");

  header_nodes_.resize(header_offsets_.size());
  for (size_t i = 0; i < header_nodes_.size(); ++i) {
    header_nodes_[i].data = header_text_.data() + header_offsets_[i];
    header_nodes_[i].next = i + 1 < header_nodes_.size() ? &header_nodes_[i + 1] : nullptr;
  }
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER,
                   header_nodes_.empty() ? static_cast<curl_slist*>(nullptr)
                                         : header_nodes_.data());
}

} // namespace stampede::worker
