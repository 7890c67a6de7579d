// HTTP/2 on libnghttp2 (`http.version: "2"`): TLS with ALPN h2 (OpenSSL, http.tls's context), or
// h2c with prior knowledge. http.h2.streams_per_connection sessions (virtual users) share one
// connection (worker/h2_connection.h), each request a stream of it; nghttp2 holds back streams
// over the server's SETTINGS_MAX_CONCURRENT_STREAMS until one closes.
//
// A session waits for its stream without a timer operation of its own (nor the coroutine frame
// Boost 1.74's use_awaitable makes per operation): the stream's close resumes it, in one posted
// turn with every session woken in the same turn, and one timer per client sweeps the deadlines
// of the requests in flight (H2Sweeper), as the Beast engine does.
#include "worker/deadline_sweeper.h"
#include "worker/gzip_decoder.h"
#include "worker/h2_connection.h"
#include "worker/h2_protocol.h"
#include "worker/http_client.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <vector>

namespace stampede::worker {
namespace {

using boost::system::error_code;
using SteadyClock = std::chrono::steady_clock;

// Timeouts are enforced to within a tenth of the shortest one, at most this late.

// `co_await suspend(waiter)` in an asio::awaitable<> coroutine parks it in `waiter` until
// something moves the waiter out and runs it: use_awaitable's handler, less the coroutine frame
// Boost 1.74 allocates for every operation it starts. Relies on Boost 1.74's await_transform of
// a function object (awaitable_frame_base), the hook use_awaitable's initiation uses.
using AwaitableThread = asio::detail::awaitable_thread<asio::any_io_executor>;

class Resume : public AwaitableThread {
public:
  explicit Resume(AwaitableThread* suspended) : AwaitableThread(std::move(*suspended)) {}
  void operator()() {
    this->top_of_stack_->attach_thread(this);
    this->pump();
  }
};

auto suspend(std::optional<Resume>& waiter) {
  return [&waiter](auto* frame) {
    waiter.emplace(frame->detach_thread());
    return static_cast<AwaitableThread*>(nullptr);
  };
}

class H2Session;

class H2Session;
using H2Sweeper = DeadlineSweeper<H2Session>;

class H2Client;

class H2Session final : public HttpSession {
public:
  H2Session(H2Client& client, size_t group, std::shared_ptr<H2Sweeper> sweeper);
  ~H2Session() override;
  asio::awaitable<void> perform(const HttpRequest& request, HttpResponse& out) override;
  HeaderList lastResponseHeaders() const override { return stream_.headerList(); }
  std::optional<std::string_view> header(std::string_view name) const override {
    return stream_.field(name);
  }
  void cancel() noexcept override {
    if (!in_flight_)
      return;
    cancelled_ = true;
    resume();
  }
  // The sweeper found the request past its deadline.
  void expire() noexcept {
    expired_ = true;
    resume();
  }

private:
  friend class DeadlineSweeper<H2Session>;
  // Resumes perform() if it waits, in a turn of its own: never inside the connection's calls
  // that closed the stream.
  void resume() noexcept;

  H2Client& client_;
  size_t group_;
  std::shared_ptr<H2Sweeper> sweeper_;
  size_t slot_ = 0; // in sweeper_
  H2Stream stream_;
  std::optional<Resume> waiter_; // perform(), while it waits for the stream
  std::shared_ptr<H2Connection> connection_;
  std::unique_ptr<GzipDecoder> gzip_;
  bool in_flight_ = false;
  bool done_ = false;
  bool cancelled_ = false;
  bool expired_ = false;
};

class H2Client final : public HttpClient {
public:
  H2Client(asio::io_context& io, const common::HttpSpec& spec,
           std::shared_ptr<const TargetPolicy> allow)
      : shared_(io, spec, std::move(allow)),
        sweeper_(std::make_shared<H2Sweeper>(io, spec.timeout)) {}
  std::unique_ptr<HttpSession> newSession() override {
    const size_t group =
        sessions_++ / std::max<uint32_t>(1, shared_.spec.h2.streams_per_connection);
    if (group >= groups_.size())
      groups_.resize(group + 1);
    return std::make_unique<H2Session>(*this, group, sweeper_);
  }
  // A connection of the group to that endpoint that takes new streams: a live one, else a new
  // one.
  std::shared_ptr<H2Connection> connectionFor(size_t group, const common::Endpoint& endpoint) {
    auto& connections = groups_[group];
    std::erase_if(connections, [](const auto& c) { return !c->alive(); });
    for (auto& c : connections)
      if (c->usable(endpoint))
        return c;
    auto c = std::make_shared<H2Connection>(shared_, endpoint);
    c->start();
    connections.push_back(c);
    return c;
  }
  H2Shared& shared() { return shared_; }
  uint64_t nextTicket() { return ++tickets_; }
  // Resumes `waiter` in the next turn, with every other session woken before it: one posted
  // handler for them all, not one each.
  void wake(Resume&& waiter) {
    woken_.push_back(std::move(waiter));
    if (wake_posted_)
      return;
    wake_posted_ = true;
    // The client outlives the io_context's last turn: run() ends only when no handler is left.
    asio::post(shared_.io, [this] {
      wake_posted_ = false;
      running_.swap(woken_);
      for (Resume& waiter : running_)
        waiter(); // may wake more sessions: they go to woken_, for the next turn
      running_.clear();
    });
  }

private:
  H2Shared shared_;
  std::shared_ptr<H2Sweeper> sweeper_;
  size_t sessions_ = 0;
  uint64_t tickets_ = 0;
  std::vector<std::vector<std::shared_ptr<H2Connection>>> groups_;
  std::vector<Resume> woken_;   // to resume in the posted turn
  std::vector<Resume> running_; // being resumed (their capacity kept)
  bool wake_posted_ = false;
};

void H2Session::resume() noexcept {
  if (!waiter_)
    return;
  client_.wake(std::move(*waiter_));
  waiter_.reset();
}

H2Session::H2Session(H2Client& client, size_t group, std::shared_ptr<H2Sweeper> sweeper)
    : client_(client), group_(group), sweeper_(std::move(sweeper)) {
  slot_ = sweeper_->add(this);
  stream_.max_body = client.shared().spec.max_body;
  stream_.on_closed = [this] {
    done_ = true;
    resume();
  };
}

H2Session::~H2Session() {
  if (in_flight_) {
    if (connection_)
      connection_->forget(stream_);
    sweeper_->end();
  }
  sweeper_->remove(slot_);
}

bool hasHeader(const HeaderList* headers, std::string_view wanted) {
  if (!headers)
    return false;
  for (const auto& [name, value] : *headers) {
    if (name.size() != wanted.size())
      continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i) {
      const char c = name[i];
      same = (c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c) == wanted[i];
    }
    if (same)
      return true;
  }
  return false;
}

asio::awaitable<void> H2Session::perform(const HttpRequest& request, HttpResponse& out) {
  out.error = TransportError::None;
  out.status = 0;
  out.body = {};
  out.bytes_in = 0;
  out.bytes_out = 0;
  out.http_version = 20;
  out.detail.clear();
  const auto& spec = client_.shared().spec;
  const bool own_agent = hasHeader(request.headers, "user-agent");
  const bool own_encoding = hasHeader(request.headers, "accept-encoding");
  in_flight_ = true;
  cancelled_ = false;
  bool timed_out = false;
  stream_.keep_body = request.keep_body;
  stream_.ticket = client_.nextTicket();
  sweeper_->begin(std::min(request.timeout, spec.timeout));
  for (int attempt = 0;; ++attempt) {
    connection_ = client_.connectionFor(group_, *request.endpoint);
    const bool reused = connection_->reused();
    auto deadline = SteadyClock::now() + request.timeout;
    if (connection_->connecting())
      deadline += spec.timeout; // the connection's own budget comes first
    sweeper_->setDeadline(slot_, deadline);
    done_ = false;
    expired_ = false;
    connection_->submit(stream_, request, own_agent, own_encoding);
    // Woken once: the stream closed, the run halted, or the deadline passed.
    if (!done_ && !cancelled_)
      co_await suspend(waiter_);
    if (!done_) {
      timed_out = !cancelled_ && expired_;
      connection_->forget(stream_);
      break;
    }
    if (!sendAgain(stream_, reused, attempt))
      break;
  }
  sweeper_->setDeadline(slot_, SteadyClock::time_point::max());
  sweeper_->end();
  in_flight_ = false;
  connection_.reset();
  if (cancelled_) {
    out.error = TransportError::Cancelled;
    co_return;
  }
  if (timed_out) {
    out.error = TransportError::Timeout;
    out.detail = "no response within the timeout (" +
                 std::to_string(request.timeout.count() / 1000) + " ms)";
    co_return;
  }
  out.bytes_in = stream_.bytes_in;
  out.bytes_out = stream_.bytes_out;
  if (stream_.error != TransportError::None) {
    out.error = stream_.error;
    out.detail = stream_.detail;
    co_return;
  }
  out.status = stream_.status;
  out.body = stream_.body;
  if (stream_.gzip && !out.body.empty()) {
    if (!gzip_)
      gzip_ = std::make_unique<GzipDecoder>();
    if (!request.keep_body) {
      gzip_->decodePrefix(stream_.body, kBodyExcerptBytes, out.body);
    } else if (const char* error = gzip_->decode(stream_.body, spec.max_body, out.body)) {
      const bool too_large = error == GzipDecoder::kTooLarge;
      out.error = too_large ? TransportError::BodyTooLarge : TransportError::Protocol;
      out.status = 0;
      out.body = {};
      out.detail = too_large ? "decoded body over http.max_body (" + std::to_string(spec.max_body) +
                                   " bytes)"
                             : std::string("gzip body: ") + error;
    }
  }
}

} // namespace

std::unique_ptr<HttpClient> makeH2Client(asio::io_context& io, const common::HttpSpec& spec,
                                         std::shared_ptr<const TargetPolicy> allow) {
  return std::make_unique<H2Client>(io, spec, std::move(allow));
}

} // namespace stampede::worker
