#include "worker/curl_response.h"

#include "worker/http1_parser.h"

#include <algorithm>
#include <cerrno>
#include <strings.h>

namespace stampede::worker {

TransportError curlErrorKind(CURLcode rc, long os_errno) {
  switch (rc) {
  case CURLE_OK:
    return TransportError::None;
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return TransportError::Resolve;
  case CURLE_COULDNT_CONNECT:
    if (os_errno == EMFILE || os_errno == ENFILE)
      return TransportError::GeneratorFdExhausted;
    return os_errno == ECONNREFUSED ? TransportError::ConnectRefused : TransportError::Connect;
  case CURLE_OPERATION_TIMEDOUT:
    return TransportError::Timeout;
  case CURLE_GOT_NOTHING:
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2_STREAM: // RST_STREAM from the peer
    return TransportError::Reset;
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_ENGINE_INITFAILED:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_SHUTDOWN_FAILED:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_CLIENTCERT:
    return TransportError::Tls;
  case CURLE_ABORTED_BY_CALLBACK:
    return TransportError::Cancelled;
  default: // WEIRD_SERVER_REPLY, HTTP2, URL_MALFORMAT, WRITE_ERROR (out of memory), ...
    return TransportError::Protocol;
  }
}

void CurlResponse::attach(CURL* easy) {
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &CurlResponse::onWrite);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &CurlResponse::onHeader);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, this);
}

void CurlResponse::reset(bool keep_body, uint64_t max_body) {
  body_.clear();
  keep_body_ = keep_body;
  max_body_ = max_body;
  body_too_large_ = false;
  head_too_large_ = false;
  raw_headers_.clear();
  header_bytes_ = 0;
}

std::string_view CurlResponse::body() {
  std::string_view out = body_;
  if (!keep_body_ && !body_.empty()) {
    // The first bytes of a gzip body nobody reads, decoded for an error report.
    const auto coding = findHeader(raw_headers_, "Content-Encoding");
    auto is = [&coding](std::string_view name) {
      return coding->size() == name.size() &&
             strncasecmp(coding->data(), name.data(), name.size()) == 0;
    };
    if (coding && (is("gzip") || is("x-gzip"))) {
      if (!gzip_)
        gzip_ = std::make_unique<GzipDecoder>();
      gzip_->decodePrefix(body_, kBodyExcerptBytes, out);
    }
  }
  return out;
}

std::optional<std::string_view> CurlResponse::header(std::string_view name) const {
  return findHeader(raw_headers_, name);
}

HeaderList CurlResponse::headers() const {
  HeaderList headers;
  std::string_view raw = raw_headers_;
  bool status_line = true;
  while (!raw.empty()) {
    auto end = raw.find('\n');
    auto line = raw.substr(0, end);
    raw.remove_prefix(end == raw.npos ? raw.size() : end + 1);
    while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
      line.remove_suffix(1);
    if (status_line) {
      status_line = false;
      continue;
    }
    auto colon = line.find(':');
    if (line.empty() || colon == line.npos)
      continue;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t'))
      value.remove_suffix(1);
    headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return headers;
}

size_t CurlResponse::onWrite(char* data, size_t size, size_t count, void* userp) noexcept {
  auto* response = static_cast<CurlResponse*>(userp);
  size_t n = size * count;
  std::string& body = response->body_;
  size_t keep = n; // a body nobody reads: its first bytes, for an error report; counted by curl
  if (!response->keep_body_)
    keep = std::min(n, body.size() < kBodyExcerptBytes ? kBodyExcerptBytes - body.size() : 0);
  else if (n > response->max_body_ - std::min<uint64_t>(body.size(), response->max_body_)) {
    response->body_too_large_ = true;
    return 0; // curl fails the transfer with CURLE_WRITE_ERROR
  }
  try {
    body.append(data, keep);
  } catch (...) {
    return 0;
  }
  return n;
}

size_t CurlResponse::onHeader(char* data, size_t size, size_t count, void* userp) noexcept {
  auto* response = static_cast<CurlResponse*>(userp);
  size_t n = size * count;
  response->header_bytes_ += n;
  // A new status line (after "100 Continue") starts the block we report.
  if (n >= 5 && std::string_view(data, 5) == "HTTP/")
    response->raw_headers_.clear();
  // The Beast engine's limit, for the same error on both (curl's own are larger).
  if (response->raw_headers_.size() + n > Http1ResponseParser::kMaxHeadBytes) {
    response->head_too_large_ = true;
    return 0;
  }
  try {
    response->raw_headers_.append(data, n);
  } catch (...) {
    return 0;
  }
  return n;
}

} // namespace stampede::worker
