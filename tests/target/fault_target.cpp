// fault_target: a small HTTP/1.1 server that fails on demand, for the tests (what nginx cannot do).
//
//   /ok             200, small body
//   /status/N       answers N
//   /delay/MS       waits MS milliseconds ("50" or "50ms"), then 200; other connections go on
//   /fail-after/N   200 for the first N requests to any /fail-after path in total, then 500
//   /close          closes the connection without answering
//   /count          the number of requests so far (itself not counted, not logged)
//   /login          issues a session token: {"token": "..."} and header X-Session: the same
//   /authorised     200 {"ok":true,"items":[{"sku":42}]} with `Authorization: Bearer TOKEN` for a
//                   token /login issued, else 401
//   /stall/AT/FOR   a stall window, in ms from the first /stall request: a request arriving
//                   in [AT, AT+FOR) is held until the window ends; any other is answered at once
//   /redirect       302 to /ok
//   /capacity/N     a server with a known capacity of N requests per second: one queue served
//                   in order, 1/N s each (answered when its turn ends). Below N req/s the
//                   latency stays near 1/N s; above, the queue grows without bound
//   anything else   404
//
// One thread, one coroutine per connection, keep-alive. --log appends one flushed line per request
// when it is answered: `<monotonic_ms_since_start> <wallclock_unix_ms> <method> <target> <status>
// <received_ns> <answered_ns>` (status `-` for /close). The last two are absolute steady-clock
// (CLOCK_MONOTONIC) nanoseconds, the clock the master and workers stamp with: taken when the
// request was read in full, and when the line is written (just before the answer goes out).
// SIGTERM and SIGINT stop it with exit code 0.
#include "common/asio.h"

#include <boost/beast.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr std::size_t kBodyLimit = 1 << 20;
constexpr std::uint64_t kMaxDelayMs = 600'000;

struct Options {
  std::string host = "127.0.0.1";
  std::optional<unsigned> port;
  std::string log_path;
  std::string port_file;
};

// Everything the connections share. Only the one io thread touches it.
struct TargetState {
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::uint64_t requests = 0;
  std::uint64_t fail_after_requests = 0;
  std::unordered_set<std::string> tokens;
  std::optional<std::chrono::steady_clock::time_point> first_stall;
  std::chrono::steady_clock::time_point capacity_free_at{}; // /capacity/N: its queue's end
  std::FILE* log = nullptr;

  void logRequest(std::string_view method, std::string_view target, std::string_view status,
                  std::chrono::steady_clock::time_point received) {
    if (log == nullptr) {
      return;
    }
    using namespace std::chrono;
    const auto now = steady_clock::now();
    const auto mono_ms = duration_cast<milliseconds>(now - started).count();
    const auto wall_ms =
        duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
    const auto ns = [](steady_clock::time_point t) {
      return static_cast<long long>(duration_cast<nanoseconds>(t.time_since_epoch()).count());
    };
    std::fprintf(log, "%lld %lld %.*s %.*s %.*s %lld %lld\n", static_cast<long long>(mono_ms),
                 static_cast<long long>(wall_ms), static_cast<int>(method.size()), method.data(),
                 static_cast<int>(target.size()), target.data(), static_cast<int>(status.size()),
                 status.data(), ns(received), ns(now));
    std::fflush(log);
  }
};

// What to do with one request.
struct Action {
  enum class Kind { respond, delay_then_respond, close };
  Kind kind = Kind::respond;
  unsigned status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::chrono::steady_clock::duration delay{0};
  std::string session;  // X-Session header, when set
  std::string location; // Location header, when set
};

std::optional<std::uint64_t> parseNumber(std::string_view text) {
  std::uint64_t value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || text.empty()) {
    return std::nullopt;
  }
  return value;
}

bool consumePrefix(std::string_view& text, std::string_view prefix) {
  if (text.substr(0, prefix.size()) != prefix) {
    return false;
  }
  text.remove_prefix(prefix.size());
  return true;
}

Action respond(unsigned status, std::string body, std::string content_type = "text/plain") {
  Action action;
  action.status = status;
  action.body = std::move(body);
  action.content_type = std::move(content_type);
  return action;
}

// Decides the answer and updates the counters; /count is handled by the caller.
Action route(std::string_view path, std::string_view authorization, TargetState& state) {
  ++state.requests;
  if (path == "/login") {
    std::string token = "tok-" + std::to_string(state.requests) + "-" +
                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
    state.tokens.insert(token);
    Action action = respond(200, "{\"token\":\"" + token + "\"}\n", "application/json");
    action.session = token;
    return action;
  }
  if (path == "/authorised") {
    std::string_view bearer = authorization;
    if (consumePrefix(bearer, "Bearer ") && state.tokens.count(std::string(bearer)) > 0) {
      return respond(200, "{\"ok\":true,\"items\":[{\"sku\":42}]}\n", "application/json");
    }
    return respond(401, "{\"error\":\"no valid token\"}\n", "application/json");
  }
  if (path == "/redirect") {
    Action action = respond(302, "");
    action.location = "/ok";
    return action;
  }
  std::string_view stall = path;
  if (consumePrefix(stall, "/stall/")) {
    const auto slash = stall.find('/');
    const auto at = parseNumber(stall.substr(0, slash));
    const auto length =
        slash == std::string_view::npos ? std::nullopt : parseNumber(stall.substr(slash + 1));
    if (!at || !length || *at > kMaxDelayMs || *length > kMaxDelayMs) {
      return respond(400, "stall needs /stall/AT_MS/FOR_MS\n");
    }
    const auto now = std::chrono::steady_clock::now();
    if (!state.first_stall) {
      state.first_stall = now;
    }
    const auto begin = *state.first_stall + std::chrono::milliseconds(*at);
    const auto end = begin + std::chrono::milliseconds(*length);
    Action action = respond(200, "ok\n");
    if (now >= begin && now < end) {
      action.kind = Action::Kind::delay_then_respond;
      action.delay = std::chrono::duration_cast<std::chrono::milliseconds>(end - now);
    }
    return action;
  }
  if (path == "/ok") {
    return respond(200, "ok\n");
  }
  std::string_view served = path;
  if (consumePrefix(served, "/capacity/")) {
    const auto per_second = parseNumber(served);
    if (!per_second || *per_second == 0 || *per_second > 1'000'000) {
      return respond(400, "capacity needs /capacity/N, N from 1 to 1000000 per second\n");
    }
    // One server: this request's turn starts when the one before it is done.
    const auto now = std::chrono::steady_clock::now();
    const auto turn = std::max(now, state.capacity_free_at);
    state.capacity_free_at = turn + std::chrono::nanoseconds(1'000'000'000 / *per_second);
    Action action = respond(200, "served\n");
    action.kind = Action::Kind::delay_then_respond;
    action.delay = state.capacity_free_at - now;
    return action;
  }
  if (path == "/close") {
    Action action;
    action.kind = Action::Kind::close;
    return action;
  }
  std::string_view rest = path;
  if (consumePrefix(rest, "/status/")) {
    const auto code = parseNumber(rest);
    if (!code || *code < 100 || *code > 999) {
      return respond(400, "status must be a number from 100 to 999\n");
    }
    return respond(static_cast<unsigned>(*code), "{\"status\":" + std::to_string(*code) + "}\n",
                   "application/json");
  }
  if (consumePrefix(rest, "/delay/")) {
    if (rest.size() > 2 && rest.substr(rest.size() - 2) == "ms") {
      rest.remove_suffix(2);
    }
    const auto ms = parseNumber(rest);
    if (!ms || *ms > kMaxDelayMs) {
      return respond(400, "delay must be milliseconds from 0 to 600000\n");
    }
    Action action = respond(200, "delayed " + std::to_string(*ms) + "ms\n");
    action.kind = Action::Kind::delay_then_respond;
    action.delay = std::chrono::milliseconds(*ms);
    return action;
  }
  if (consumePrefix(rest, "/fail-after/")) {
    const auto limit = parseNumber(rest);
    if (!limit) {
      return respond(400, "fail-after needs a request count\n");
    }
    const std::uint64_t nth = ++state.fail_after_requests;
    if (nth <= *limit) {
      return respond(200, "{\"ok\":true,\"request\":" + std::to_string(nth) + "}\n",
                     "application/json");
    }
    return respond(500, "{\"error\":\"pool exhausted\",\"request\":" + std::to_string(nth) + "}\n",
                   "application/json");
  }
  return respond(404, "not found\n");
}

asio::awaitable<void> serveConnection(tcp::socket socket, TargetState& state) {
  beast::flat_buffer buffer;
  beast::error_code ec;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(kBodyLimit);
    co_await http::async_read(socket, buffer, parser,
                              asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      break; // end of stream, reset, or a request we cannot parse: drop the connection
    }
    const auto received = std::chrono::steady_clock::now();
    const auto& request = parser.get();
    const std::string target(request.target());
    const std::string method(request.method_string());
    const std::string_view path = std::string_view(target).substr(0, target.find('?'));

    Action action;
    if (path == "/count") {
      action = respond(200, std::to_string(state.requests) + "\n");
    } else {
      const auto authorization = request[http::field::authorization];
      action = route(path, std::string_view(authorization.data(), authorization.size()), state);
    }

    if (action.kind == Action::Kind::close) {
      state.logRequest(method, target, "-", received);
      break;
    }
    if (action.kind == Action::Kind::delay_then_respond) {
      asio::steady_timer timer(socket.get_executor(), action.delay);
      co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }

    http::response<http::string_body> response{static_cast<http::status>(action.status),
                                               request.version()};
    response.set(http::field::server, "stampede-fault-target");
    response.set(http::field::content_type, action.content_type);
    response.keep_alive(request.keep_alive());
    if (!action.session.empty()) {
      response.set("X-Session", action.session);
    }
    if (!action.location.empty()) {
      response.set(http::field::location, action.location);
    }
    response.body() = std::move(action.body);
    response.prepare_payload();
    if (path != "/count") {
      state.logRequest(method, target, std::to_string(action.status), received);
    }
    co_await http::async_write(socket, response, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !response.keep_alive()) {
      break;
    }
  }
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

asio::awaitable<void> acceptLoop(tcp::acceptor& acceptor, TargetState& state) {
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    beast::error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) {
      co_return;
    }
    if (ec) {
      // Out of file descriptors and the like: back off briefly instead of spinning.
      asio::steady_timer pause(executor, std::chrono::milliseconds(10));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(executor, serveConnection(std::move(socket), state), asio::detached);
  }
}

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr,
               "fault_target: %s\n"
               "usage: fault_target --port N [--host 127.0.0.1] [--log FILE] [--port-file FILE]\n",
               message);
  std::exit(2);
}

Options parseArgs(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage("a fault-injecting HTTP/1.1 target for tests");
    }
    if (i + 1 >= argc) {
      usage(("missing value for " + std::string(arg)).c_str());
    }
    const char* value = argv[++i];
    if (arg == "--port") {
      const auto port = parseNumber(value);
      if (!port || *port > 65535) {
        usage("--port must be a number from 0 to 65535");
      }
      options.port = static_cast<unsigned>(*port);
    } else if (arg == "--host") {
      options.host = value;
    } else if (arg == "--log") {
      options.log_path = value;
    } else if (arg == "--port-file") {
      options.port_file = value;
    } else {
      usage(("unknown option " + std::string(arg)).c_str());
    }
  }
  if (!options.port) {
    usage("--port is required (0 picks a free one)");
  }
  return options;
}

// Written to a temporary name and renamed, so that a reader never sees half a number.
bool writePortFile(const std::string& path, unsigned port) {
  const std::string tmp = path + ".tmp";
  std::FILE* file = std::fopen(tmp.c_str(), "w");
  if (file == nullptr) {
    return false;
  }
  const bool written = std::fprintf(file, "%u\n", port) > 0;
  const bool closed = std::fclose(file) == 0;
  return written && closed && std::rename(tmp.c_str(), path.c_str()) == 0;
}

} // namespace

int main(int argc, char** argv) {
  const Options options = parseArgs(argc, argv);
  TargetState state;
  if (!options.log_path.empty()) {
    state.log = std::fopen(options.log_path.c_str(), "a");
    if (state.log == nullptr) {
      std::perror(("fault_target: cannot open log " + options.log_path).c_str());
      return 1;
    }
  }

  try {
    asio::io_context io(1);
    const tcp::endpoint endpoint(asio::ip::make_address(options.host),
                                 static_cast<unsigned short>(*options.port));
    tcp::acceptor acceptor(io);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
    const unsigned port = acceptor.local_endpoint().port();

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const beast::error_code& ec, int) {
      if (!ec) {
        io.stop();
      }
    });

    asio::co_spawn(io, acceptLoop(acceptor, state), asio::detached);
    if (!options.port_file.empty() && !writePortFile(options.port_file, port)) {
      std::perror(("fault_target: cannot write " + options.port_file).c_str());
      return 1;
    }
    std::fprintf(stderr, "fault_target: listening on %s:%u\n", options.host.c_str(), port);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fault_target: %s\n", e.what());
    return 1;
  }
  if (state.log != nullptr) {
    std::fclose(state.log);
  }
  return 0;
}
