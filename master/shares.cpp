#include "master/shares.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace stampede::master {

namespace {

// Capacities become integers with the largest at 2^40, so that quotas and remainders are
// exact integer arithmetic. In floating point, 0.1 * 3 and 0.3 * 1 differ in the last bit and
// would break a tie that the user wrote as one; rounding to 2^-40 of the largest capacity
// absorbs that noise, and moves a quota by at most users * 2^-41 (0.002 users at 2^32).
constexpr double kScale = double(uint64_t{1} << 40);
// users (< 2^32) times a scaled capacity (<= 2^40) needs more than 64 bits.
__extension__ using Uint128 = unsigned __int128;

} // namespace

std::vector<WorkerShare> splitUsers(uint32_t users, std::span<const double> capacity) {
  double largest = 0;
  for (const double c : capacity) {
    if (!std::isfinite(c) || c < 0)
      throw std::invalid_argument("worker capacity must be a finite number >= 0, got " +
                                  std::to_string(c));
    largest = std::max(largest, c);
  }
  std::vector<WorkerShare> shares(capacity.size());
  if (users == 0)
    return shares;
  if (largest == 0)
    throw std::invalid_argument("cannot split users among workers with no capacity");

  std::vector<uint64_t> weight(capacity.size());
  uint64_t total = 0;
  for (size_t i = 0; i < capacity.size(); ++i) {
    weight[i] = uint64_t(std::llround(capacity[i] / largest * kScale));
    total += weight[i];
  }

  std::vector<uint64_t> remainder(capacity.size());
  uint64_t given = 0;
  for (size_t i = 0; i < capacity.size(); ++i) {
    const Uint128 exact = Uint128(users) * weight[i]; // quota = exact / total
    shares[i].users = uint32_t(exact / total);
    remainder[i] = uint64_t(exact % total);
    given += shares[i].users;
  }

  // Fewer leftover users than workers with a non-zero remainder: the sum of the remainders
  // is (users - given) * total, and each one is below total.
  std::vector<size_t> order;
  for (size_t i = 0; i < capacity.size(); ++i)
    if (remainder[i] > 0)
      order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return remainder[a] > remainder[b]; });
  for (uint64_t k = 0; k < uint64_t(users) - given; ++k)
    ++shares[order[k]].users;
  return shares;
}

} // namespace stampede::master
