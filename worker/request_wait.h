// Suspends a virtual user's asio::awaitable<> coroutine while a request that
// HttpSession::start() began is in flight, and resumes it in place when the session completes
// it: no coroutine frame per request. Relies on Boost 1.74's await_transform of a function
// object, as readSome in worker/beast_client.cpp does. Used on its load thread only.
#pragma once

#include "worker/http_client.h"

#include <exception>
#include <optional>
#include <utility>

namespace stampede::worker {

class RequestWait final : public HttpCompletion {
public:
  // `co_await wait.suspend();` right after start() returned true, then rethrowIfFailed().
  auto suspend() {
    return [this](auto* frame) {
      thread_.emplace(std::move(*frame->detach_thread()));
      return static_cast<Thread*>(nullptr);
    };
  }
  void complete(std::exception_ptr error) override {
    error_ = std::move(error);
    // Out of this object first: the resumed coroutine may start its next request at once.
    Thread thread(std::move(*thread_));
    thread_.reset();
    thread.resume();
  }
  void rethrowIfFailed() {
    if (error_)
      std::rethrow_exception(std::exchange(error_, nullptr));
  }

private:
  using Base = asio::detail::awaitable_thread<asio::any_io_executor>;
  // The suspended coroutine stack, as use_awaitable's handlers hold it.
  class Thread : public Base {
  public:
    explicit Thread(Base&& suspended) : Base(std::move(suspended)) {}
    Thread(Thread&&) noexcept = default;
    void resume() {
      this->top_of_stack_->attach_thread(this);
      this->pump();
    }
  };

  std::optional<Thread> thread_;
  std::exception_ptr error_;
};

} // namespace stampede::worker
