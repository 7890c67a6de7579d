// HTTP/1.1 on Boost.Beast: one keep-alive connection per session, the request serialised into a
// reused string and the response parsed by a basic_parser that writes into reused buffers, so
// the steady state allocates nothing per request.
#include "worker/http_client.h"

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <charconv>
#include <map>
#include <optional>

namespace stampede::worker {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using beast::error_code;

constexpr size_t kMaxBodyBytes = 64 * 1024 * 1024;
constexpr std::string_view kUserAgent = "stampede/" STAMPEDE_VERSION;

// Parses one response into buffers owned by the session; emplaced fresh for every response
// (construction is cheap and allocation-free).
class ResponseParser final : public http::basic_parser<false> {
public:
  ResponseParser(std::string& body, std::string& raw_headers)
      : body_(body), raw_headers_(raw_headers) {
    body_.clear();
    raw_headers_.clear();
    body_limit(kMaxBodyBytes);
  }
  int status() const { return status_; }

private:
  void on_request_impl(http::verb, beast::string_view, beast::string_view, int,
                       error_code&) override {}
  void on_response_impl(int code, beast::string_view, int, error_code&) override { status_ = code; }
  void on_field_impl(http::field, beast::string_view name, beast::string_view value,
                     error_code&) override {
    // Kept raw: headers are only read when a request fails (the first-error report).
    raw_headers_.append(name.data(), name.size());
    raw_headers_.push_back('\0');
    raw_headers_.append(value.data(), value.size());
    raw_headers_.push_back('\0');
  }
  void on_header_impl(error_code&) override {}
  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    if (length && *length <= kMaxBodyBytes)
      body_.reserve(*length);
  }
  size_t on_body_impl(beast::string_view data, error_code&) override {
    body_.append(data.data(), data.size());
    return data.size();
  }
  void on_chunk_header_impl(std::uint64_t, beast::string_view, error_code&) override {}
  size_t on_chunk_body_impl(std::uint64_t, beast::string_view data, error_code&) override {
    body_.append(data.data(), data.size());
    return data.size();
  }
  void on_finish_impl(error_code&) override {}

  std::string& body_;
  std::string& raw_headers_;
  int status_ = 0;
};

TransportError classify(const error_code& ec, bool connecting) {
  if (ec == beast::error::timeout)
    return TransportError::Timeout;
  if (ec == asio::error::operation_aborted)
    return TransportError::Cancelled;
  if (ec == asio::error::connection_refused)
    return TransportError::ConnectRefused;
  if (ec == asio::error::host_not_found || ec == asio::error::host_not_found_try_again ||
      ec == asio::error::no_data)
    return TransportError::Resolve;
  if (ec.category() == asio::error::get_ssl_category() ||
      ec.category() == asio::ssl::error::get_stream_category())
    return TransportError::Tls;
  if (ec.category() == error_code(http::error::end_of_stream).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message)
    return TransportError::Protocol;
  if (connecting)
    return TransportError::Connect;
  return TransportError::Reset;
}

class BeastClient;

class BeastSession final : public HttpSession {
public:
  BeastSession(asio::io_context& io, asio::ssl::context& ssl, const common::HttpSpec& spec)
      : io_(io), ssl_(ssl), spec_(spec) {}

  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override;
  HeaderList lastResponseHeaders() const override;
  void cancel() noexcept override;

private:
  bool sameEndpoint(const common::Endpoint& e) const {
    return connected_ && e.port == port_ && e.host == host_ && e.tls() == tls_;
  }
  beast::tcp_stream& lowest() {
    return tls_stream_ ? beast::get_lowest_layer(*tls_stream_) : *tcp_;
  }
  void closeConnection() noexcept;
  asio::awaitable<error_code> connect(const common::Endpoint& endpoint, bool& connect_phase);
  void serialise(const HttpRequest& request);
  // One attempt on the current (or a new) connection. `reused` tells the caller whether a
  // failure before any response byte may be retried on a fresh connection.
  asio::awaitable<error_code> attempt(const HttpRequest& request, HttpResponse& out,
                                      bool& connect_phase, bool& reused, bool& got_bytes);

  asio::io_context& io_;
  asio::ssl::context& ssl_;
  const common::HttpSpec& spec_;

  std::optional<beast::tcp_stream> tcp_;
  std::optional<beast::ssl_stream<beast::tcp_stream>> tls_stream_;
  bool connected_ = false;
  bool in_flight_ = false;
  bool cancelled_ = false;
  std::string host_;
  uint16_t port_ = 0;
  bool tls_ = false;

  std::string out_;
  std::string body_;
  std::string raw_headers_;
  beast::flat_buffer buffer_;
  std::optional<ResponseParser> parser_;
};

void BeastSession::closeConnection() noexcept {
  error_code ignored;
  if (tls_stream_) {
    beast::get_lowest_layer(*tls_stream_).socket().close(ignored);
    tls_stream_.reset();
  }
  if (tcp_) {
    tcp_->socket().close(ignored);
    tcp_.reset();
  }
  connected_ = false;
  buffer_.clear();
}

void BeastSession::cancel() noexcept {
  if (!in_flight_)
    return;
  cancelled_ = true;
  // Closing (not just cancelling) the socket: the connection's state is unknown afterwards.
  error_code ignored;
  if (tls_stream_)
    beast::get_lowest_layer(*tls_stream_).socket().close(ignored);
  else if (tcp_)
    tcp_->socket().close(ignored);
}

asio::awaitable<error_code> BeastSession::connect(const common::Endpoint& endpoint,
                                                  bool& connect_phase) {
  closeConnection();
  connect_phase = true;
  error_code ec;
  tcp::resolver::results_type results;
  auto address = asio::ip::make_address(endpoint.host, ec);
  tcp::endpoint direct;
  if (!ec) {
    direct = tcp::endpoint(address, endpoint.port);
  } else {
    tcp::resolver resolver(io_);
    results = co_await resolver.async_resolve(endpoint.host, std::to_string(endpoint.port),
                                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return ec;
  }
  if (endpoint.tls()) {
    tls_stream_.emplace(io_, ssl_);
    if (!SSL_set_tlsext_host_name(tls_stream_->native_handle(), endpoint.host.c_str()))
      co_return error_code(static_cast<int>(::ERR_get_error()), asio::error::get_ssl_category());
    tls_stream_->set_verify_callback(asio::ssl::host_name_verification(endpoint.host));
  } else {
    tcp_.emplace(io_);
  }
  auto& stream = lowest();
  stream.expires_after(spec_.timeout);
  if (results.empty())
    co_await stream.async_connect(direct, asio::redirect_error(asio::use_awaitable, ec));
  else
    co_await stream.async_connect(results, asio::redirect_error(asio::use_awaitable, ec));
  if (ec)
    co_return ec;
  stream.socket().set_option(tcp::no_delay(true), ec);
  if (tls_stream_) {
    co_await tls_stream_->async_handshake(asio::ssl::stream_base::client,
                                          asio::redirect_error(asio::use_awaitable, ec));
    if (ec)
      co_return ec;
  }
  connected_ = true;
  host_ = endpoint.host;
  port_ = endpoint.port;
  tls_ = endpoint.tls();
  connect_phase = false;
  co_return error_code{};
}

bool isHeader(std::string_view name, std::string_view wanted) {
  return name.size() == wanted.size() &&
         std::equal(name.begin(), name.end(), wanted.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

void BeastSession::serialise(const HttpRequest& request) {
  const auto& endpoint = *request.endpoint;
  // The scenario's own Host or User-Agent replaces ours: never send one twice.
  bool own_host = false;
  bool own_agent = false;
  if (request.headers) {
    for (const auto& header : *request.headers) {
      own_host = own_host || isHeader(header.first, "host");
      own_agent = own_agent || isHeader(header.first, "user-agent");
    }
  }
  out_.clear();
  out_.append(request.method);
  out_.push_back(' ');
  out_.append(request.target.empty() ? std::string_view("/") : request.target);
  out_.append(" HTTP/1.1\r\n");
  if (!own_host) {
    out_.append("Host: ");
    const bool v6 = endpoint.host.find(':') != std::string::npos;
    if (v6)
      out_.push_back('[');
    out_.append(endpoint.host);
    if (v6)
      out_.push_back(']');
    if (endpoint.port != (endpoint.tls() ? 443 : 80)) {
      char port[8];
      auto end = std::to_chars(port, port + sizeof port, endpoint.port).ptr;
      out_.push_back(':');
      out_.append(port, end);
    }
    out_.append("\r\n");
  }
  if (!own_agent) {
    out_.append("User-Agent: ");
    out_.append(kUserAgent);
    out_.append("\r\n");
  }
  if (request.headers) {
    for (const auto& [name, value] : *request.headers) {
      out_.append(name);
      out_.append(": ");
      out_.append(value);
      out_.append("\r\n");
    }
  }
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
      request.method == "PATCH") {
    char length[24];
    auto end = std::to_chars(length, length + sizeof length, request.body.size()).ptr;
    out_.append("Content-Length: ");
    out_.append(length, end);
    out_.append("\r\n");
  }
  if (!spec_.keep_alive)
    out_.append("Connection: close\r\n");
  out_.append("\r\n");
  out_.append(request.body);
}

asio::awaitable<error_code> BeastSession::attempt(const HttpRequest& request, HttpResponse& out,
                                                  bool& connect_phase, bool& reused,
                                                  bool& got_bytes) {
  error_code ec;
  reused = sameEndpoint(*request.endpoint);
  if (!reused) {
    ec = co_await connect(*request.endpoint, connect_phase);
    if (ec)
      co_return ec;
  }
  auto& stream = lowest();
  stream.expires_after(request.timeout);
  size_t written = 0;
  if (tls_stream_)
    written = co_await asio::async_write(*tls_stream_, asio::buffer(out_),
                                         asio::redirect_error(asio::use_awaitable, ec));
  else
    written = co_await asio::async_write(*tcp_, asio::buffer(out_),
                                         asio::redirect_error(asio::use_awaitable, ec));
  out.bytes_out += written;
  if (ec)
    co_return ec;
  parser_.emplace(body_, raw_headers_);
  if (request.method == "HEAD")
    parser_->skip(true);
  size_t read = 0;
  if (tls_stream_)
    read = co_await http::async_read(*tls_stream_, buffer_, *parser_,
                                     asio::redirect_error(asio::use_awaitable, ec));
  else
    read = co_await http::async_read(*tcp_, buffer_, *parser_,
                                     asio::redirect_error(asio::use_awaitable, ec));
  out.bytes_in += read;
  got_bytes = read > 0 || parser_->got_some();
  co_return ec;
}

asio::awaitable<void> BeastSession::perform(const HttpRequest& request, HttpResponse& out) {
  out.error = TransportError::None;
  out.status = 0;
  out.body = {};
  out.bytes_in = 0;
  out.bytes_out = 0;
  out.detail.clear();
  serialise(request);
  in_flight_ = true;
  cancelled_ = false;

  error_code ec;
  bool connect_phase = false;
  bool reused = false;
  bool got_bytes = false;
  ec = co_await attempt(request, out, connect_phase, reused, got_bytes);
  // A keep-alive connection the server closed while idle fails before any response byte:
  // that is not the target failing, so retry once on a fresh connection (as curl does).
  if (ec && reused && !got_bytes && !cancelled_ && ec != beast::error::timeout) {
    closeConnection();
    ec = co_await attempt(request, out, connect_phase, reused, got_bytes);
  }
  in_flight_ = false;

  if (cancelled_) {
    closeConnection();
    out.error = TransportError::Cancelled;
    co_return;
  }
  if (ec) {
    out.error = classify(ec, connect_phase);
    out.detail = ec.message();
    closeConnection();
    co_return;
  }
  out.status = parser_->status();
  out.body = body_;
  if (!parser_->keep_alive() || !spec_.keep_alive)
    closeConnection();
}

HeaderList BeastSession::lastResponseHeaders() const {
  HeaderList headers;
  std::string_view raw = raw_headers_;
  while (!raw.empty()) {
    auto name_end = raw.find('\0');
    auto value_end = raw.find('\0', name_end + 1);
    if (name_end == raw.npos || value_end == raw.npos)
      break;
    headers.emplace_back(std::string(raw.substr(0, name_end)),
                         std::string(raw.substr(name_end + 1, value_end - name_end - 1)));
    raw.remove_prefix(value_end + 1);
  }
  return headers;
}

class BeastClient final : public HttpClient {
public:
  BeastClient(asio::io_context& io, const common::HttpSpec& spec)
      : io_(io), spec_(spec), ssl_(asio::ssl::context::tls_client) {
    ssl_.set_default_verify_paths();
    ssl_.set_verify_mode(asio::ssl::verify_peer);
  }
  std::unique_ptr<HttpSession> newSession() override {
    return std::make_unique<BeastSession>(io_, ssl_, spec_);
  }

private:
  asio::io_context& io_;
  const common::HttpSpec& spec_;
  asio::ssl::context ssl_;
};

} // namespace

std::unique_ptr<HttpClient> makeBeastClient(asio::io_context& io, const common::HttpSpec& spec) {
  return std::make_unique<BeastClient>(io, spec);
}

} // namespace stampede::worker
