// The one way to include Boost.Asio and Beast in Stampede.
// Boost 1.74 with g++ 12 and C++20 coroutines needs <utility> before any asio header.
#pragma once

#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;
