// The STOMP session's heart-beats against a scripted broker on loopback: the CONNECT offers
// what messaging.heartbeat says, EOLs go out while the session is idle, a broker that goes
// silent is a loss (reconnected within the budget, its time recorded), and a broker that keeps
// sending heart-beats is not.
#include "worker/msg_session.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace stampede;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using asio::ip::tcp;

namespace {

struct BrokerConnection {
  std::string connect_frame; // the CONNECT as received
  size_t eols = 0;           // heart-beat EOLs received after it
  Clock::time_point connected_at, closed_at;
};

// Connection 1: CONNECTED with heart-beat 300,300, then silence. Connection 2: the same, then
// an EOL every 100 ms and, after 1 s, one MESSAGE. Every byte the client sends is counted.
asio::awaitable<void> scriptedBroker(tcp::acceptor& acceptor, std::vector<BrokerConnection>& seen) {
  for (int n = 0; n < 2; ++n) {
    tcp::socket socket = co_await acceptor.async_accept(asio::use_awaitable);
    seen.emplace_back();
    std::string in;
    char chunk[4096];
    while (in.find('\0') == std::string::npos)
      in.append(chunk, co_await socket.async_read_some(asio::buffer(chunk), asio::use_awaitable));
    seen.back().connect_frame = in.substr(0, in.find('\0'));
    seen.back().connected_at = Clock::now();
    co_await asio::async_write(
        socket, asio::buffer(std::string("CONNECTED\nversion:1.2\nheart-beat:300,300\n\n") + '\0'),
        asio::use_awaitable);
    if (n == 1) {
      asio::steady_timer beat(socket.get_executor());
      for (int i = 0; i < 10; ++i) {
        beat.expires_after(100ms);
        co_await beat.async_wait(asio::use_awaitable);
        co_await asio::async_write(socket, asio::buffer("\n", 1), asio::use_awaitable);
      }
      const std::string message =
          std::string("MESSAGE\ndestination:/topic/t\nmessage-id:m1\nsubscription:1\n\nhi") + '\0';
      co_await asio::async_write(socket, asio::buffer(message), asio::use_awaitable);
    }
    // Count the client's EOLs until it closes the connection.
    boost::system::error_code ec;
    for (;;) {
      const size_t got = co_await socket.async_read_some(
          asio::buffer(chunk), asio::redirect_error(asio::use_awaitable, ec));
      if (ec)
        break;
      for (size_t i = 0; i < got; ++i)
        seen.back().eols += chunk[i] == '\n';
      if (n == 1)
        break; // the client holds the second connection: enough seen
    }
    seen.back().closed_at = Clock::now();
  }
}

} // namespace

TEST_CASE("stomp heart-beats: offered, sent when idle, a silent broker is a loss reconnected",
          "[stomp][heartbeat]") {
  asio::io_context io;
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = acceptor.local_endpoint().port();
  std::vector<BrokerConnection> seen;
  asio::co_spawn(io, scriptedBroker(acceptor, seen), asio::detached);

  worker::ConnectionSettings settings;
  settings.urls.push_back({"127.0.0.1", port, false, "tcp://127.0.0.1:" + std::to_string(port)});
  settings.heartbeat = {300ms, 300ms, 2.0};
  settings.reconnect.delay = 50ms;
  settings.reconnect.budget = 3s;
  auto session = worker::makeStompSession(io, settings);

  worker::MsgResult result;
  worker::InMessage message;
  bool done = false;
  const auto started = Clock::now();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        result = co_await session->receive(message, 5s);
        done = true;
      },
      asio::detached);
  const auto deadline = Clock::now() + 10s;
  while (!done && Clock::now() < deadline)
    io.run_one_until(deadline);
  REQUIRE(done);

  REQUIRE(seen.size() == 2);
  CHECK(seen[0].connect_frame.find("\nheart-beat:300,300\n") != std::string::npos);
  // Idle on the first connection: an EOL at least every 300 ms (one at 200-300 ms idle).
  const auto first_lasted = seen[0].closed_at - seen[0].connected_at;
  CHECK(seen[0].eols >= 1);
  CHECK(seen[0].eols <= 6);
  // Silent for the broker's 300 ms times 2: dropped then, not at the receive's 5 s.
  CHECK(first_lasted >= 550ms);
  CHECK(first_lasted < 2s);
  // Reconnected, and the second connection lived through 1 s of the broker's heart-beats to
  // deliver the message.
  INFO(worker::msgErrorKindName(result.error) << ": " << result.detail);
  REQUIRE(result.ok());
  CHECK(message.body == "hi");
  REQUIRE(session->reconnects() == 1);
  REQUIRE(session->reconnectTimes().size() == 1);
  CHECK(session->reconnectTimes()[0] < 1s);
  CHECK(Clock::now() - started >= 1500ms);
  session->cancel();
}
