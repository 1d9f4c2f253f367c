// a1::QuantileBuffer: the calibration scores of one conformal stratum, appended concurrently by
// many producers (lock-free, no mutex) and queried for the exact conformal threshold and p-value.
// Torch-free and header-only so the Python binding, the TSan test and the engine share it.
//
// Storage: one slot per score with a turn counter (rigtorp/MPMCQueue style). A producer takes a
// ticket with fetch_add on `head_`, writes slot ticket % slots and publishes the slot's turn with a
// release store; readers only ever use slots whose turn says "committed".
//   - Unbounded (window == 0): slots = capacity, each written once: turn 0 (empty) -> 2 (committed).
//     Pushing past capacity throws std::length_error and changes nothing.
//   - Windowed (window > 0): a ring of `window` slots; the write of ticket t waits for turn
//     2*lap (lap = t / window, i.e. ticket t - window has committed), marks the slot busy (2*lap+1),
//     writes, and commits 2*lap+2. Ticket t thus evicts ticket t - window, and once pushes are
//     quiescent the buffer holds exactly the `window` most recent tickets. Never overflows.
// Queries running concurrently with pushes see every slot either committed (old or new value,
// never torn) or skip it; they are exact whenever no push is in flight.
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/multiversion.h"

// Fault injection for the fuzz tests: define A1_QUANTILE_BUFFER_STRESS before including this header
// to stall some producers between taking a ticket and writing its slot (the window where races
// hide), so that later tickets really do overtake earlier ones.
#ifdef A1_QUANTILE_BUFFER_STRESS
#include <chrono>
#define A1_QB_STRESS_POINT(ticket)                                                         \
  do {                                                                                     \
    if ((ticket) % 7 == 3) std::this_thread::sleep_for(std::chrono::microseconds(20));     \
    else if ((ticket) % 5 == 0) std::this_thread::yield();                                 \
  } while (0)
#else
#define A1_QB_STRESS_POINT(ticket) \
  do {                             \
  } while (0)
#endif

namespace a1 {

namespace detail {
inline std::string format_double(double x) {  // "1.5", "1e-09", "nan": std::to_string prints 0.000000
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// #{v > s} and #{v == s}: the p-value's hot loop. Baseline x86-64 (SSE2) does not vectorize it
// (3.7 us at n = 4096 on our CPU); the AVX2 clone does (0.5 us).
A1_MULTIVERSION inline void count_around(const double* v, std::size_t len, double s,
                                         std::size_t& greater, std::size_t& equal) {
  std::size_t g = 0, e = 0;
  for (std::size_t i = 0; i < len; ++i) {
    g += v[i] > s;
    e += v[i] == s;
  }
  greater += g;
  equal += e;
}
}  // namespace detail

class QuantileBuffer {
 public:
  explicit QuantileBuffer(std::size_t capacity, std::size_t window = 0)
      : capacity_(capacity), window_(window), slots_(window ? window : capacity) {
    if (capacity == 0) throw std::invalid_argument("QuantileBuffer: capacity must be >= 1, got 0");
    if (window > capacity)
      throw std::invalid_argument("QuantileBuffer: window must be <= capacity (" +
                                  std::to_string(capacity) + "), got " + std::to_string(window));
    values_.reset(new double[slots_]());  // zeroed: the ring reads before it checks
    turns_.reset(new std::atomic<std::uint64_t>[slots_]());
  }
  QuantileBuffer(const QuantileBuffer&) = delete;
  QuantileBuffer& operator=(const QuantileBuffer&) = delete;

  std::size_t capacity() const { return capacity_; }
  std::size_t window() const { return window_; }

  // Appends one score; returns its ticket (0-based position in the stream of pushes).
  std::uint64_t push(double score) {
    if (std::isnan(score)) throw std::invalid_argument("QuantileBuffer.push: score is NaN");
    const std::uint64_t ticket = head_.fetch_add(1, std::memory_order_relaxed);
    A1_QB_STRESS_POINT(ticket);
    if (window_ == 0) {
      if (ticket >= capacity_) throw_full();  // tickets past capacity own no slot: nothing to undo
      values_[ticket] = score;                // slot written once; published by the release below
      turns_[ticket].store(kCommitted, std::memory_order_release);
    } else {
      write_ring(ticket, score);
    }
    return ticket;
  }

  // Appends n scores with consecutive tickets; returns the first. All-or-nothing: a NaN or a batch
  // that does not fit inserts nothing.
  std::uint64_t extend(const double* scores, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      if (std::isnan(scores[i]))
        throw std::invalid_argument("QuantileBuffer.extend: scores[" + std::to_string(i) +
                                    "] is NaN; nothing was inserted");
    if (n == 0) return head_.load(std::memory_order_relaxed);
    if (window_ != 0) {
      const std::uint64_t first = head_.fetch_add(n, std::memory_order_relaxed);
      for (std::size_t i = 0; i < n; ++i) write_ring(first + i, scores[i]);
      return first;
    }
    // Reserve with CAS, not fetch_add, so a batch that does not fit leaves no reserved-but-never-
    // written holes below capacity.
    std::uint64_t first = head_.load(std::memory_order_relaxed);
    do {
      if (first > capacity_ || n > capacity_ - first) throw_full(n);
    } while (!head_.compare_exchange_weak(first, first + n, std::memory_order_relaxed));
    A1_QB_STRESS_POINT(first);
    std::copy(scores, scores + n, values_.get() + first);
    for (std::size_t i = 0; i < n; ++i)
      turns_[first + i].store(kCommitted, std::memory_order_release);
    return first;
  }

  // Number of committed scores (with a window: at most `window`).
  std::size_t size() const {
    const std::size_t ready = advance_prefix(), end = bound();
    std::size_t n = ready;
    for (std::size_t i = ready; i < end; ++i)
      n += turns_[i].load(std::memory_order_acquire) >= kCommitted;
    return n;
  }

  // Conformal p-value of `score` against the buffer: (1 + #{s_i >= s}) / (n + 1), or smoothed
  // (#{s_i > s} + u * (1 + #{s_i == s})) / (n + 1) with u ~ U(0, 1) supplied by the caller.
  double p_value(double score, bool smoothed = false, double u = 1.0) const {
    if (std::isnan(score)) throw std::invalid_argument("QuantileBuffer.p_value: score is NaN");
    if (smoothed && !(u >= 0.0 && u <= 1.0))
      throw std::invalid_argument("QuantileBuffer.p_value: u must be in [0, 1], got " +
                                  detail::format_double(u));
    std::size_t n = 0, greater = 0, equal = 0;
    if (window_ == 0) {
      visit([&](const double* v, std::size_t len) { detail::count_around(v, len, score, greater, equal); n += len; },
            [&](double v) { greater += v > score; equal += v == score; ++n; });
    } else {
      // Ring: read_slot's seqlock inlined without branches (8.9 -> 7.1 us at n = 4096 here).
      for (std::size_t i = 0, end = bound(); i < end; ++i) {
        const std::uint64_t before = turns_[i].load(std::memory_order_acquire);
        const double v = std::atomic_ref<double>(values_[i]).load(std::memory_order_acquire);
        const std::uint64_t after = turns_[i].load(std::memory_order_relaxed);
        const bool ok = (before >= kCommitted) & !(before & 1) & (after == before);
        n += ok;
        greater += ok & (v > score);
        equal += ok & (v == score);
      }
    }
    const double denom = static_cast<double>(n) + 1.0;
    if (!smoothed) return (1.0 + static_cast<double>(greater + equal)) / denom;
    return (static_cast<double>(greater) + u * (1.0 + static_cast<double>(equal))) / denom;
  }

  // Conformal threshold: the k-th smallest score, k = ceil((n + 1)(1 - alpha)); +inf when k > n.
  // `s > threshold(alpha)` holds exactly when `p_value(s) <= alpha`.
  double threshold(double alpha) const {
    if (!(alpha > 0.0 && alpha < 1.0))
      throw std::invalid_argument("QuantileBuffer.threshold: alpha must be in (0, 1), got " +
                                  detail::format_double(alpha));
    std::vector<double> scores = collect();
    const std::size_t n = scores.size(), k = conformal_rank(n, alpha);
    if (k > n) return std::numeric_limits<double>::infinity();
    std::nth_element(scores.begin(), scores.begin() + static_cast<std::ptrdiff_t>(k - 1), scores.end());
    return scores[k - 1];
  }

  // k = ceil((n + 1)(1 - alpha)) = n + 1 - J with J = max{j : j / (n + 1) <= alpha}, J evaluated
  // with the very division p_value uses. Computing (n + 1) * (1 - alpha) directly can land one
  // ulp above an integer (alpha = 0.7, n = 9 gives 3.0000000000000004, so k = 4 instead of 3) and
  // make the threshold disagree with the p-value test.
  static std::size_t conformal_rank(std::size_t n, double alpha) {
    const double m = static_cast<double>(n) + 1.0;
    double j = std::floor(alpha * m);
    while (j + 1.0 <= m && (j + 1.0) / m <= alpha) j += 1.0;
    while (j > 0.0 && j / m > alpha) j -= 1.0;
    return n + 1 - static_cast<std::size_t>(j);
  }

  // Committed scores in ticket (arrival) order.
  std::vector<double> snapshot() const {
    if (window_ == 0) return collect();
    std::vector<std::pair<std::uint64_t, double>> items;  // (ticket, score)
    items.reserve(bound());
    for (std::size_t i = 0, end = bound(); i < end; ++i) {
      double v;
      if (const std::uint64_t turn = read_slot(i, v)) items.emplace_back((turn / 2 - 1) * window_ + i, v);
    }
    // Quiescent rings are a rotation of ticket order; concurrent laps may need a real sort.
    std::rotate(items.begin(), std::min_element(items.begin(), items.end()), items.end());
    if (!std::is_sorted(items.begin(), items.end())) std::sort(items.begin(), items.end());
    std::vector<double> out(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) out[i] = items[i].second;
    return out;
  }

 private:
  static constexpr std::uint64_t kCommitted = 2;  // turn of a slot committed in lap 0

  [[noreturn]] void throw_full(std::size_t wanted = 1) const {
    throw std::length_error("QuantileBuffer is full: capacity=" + std::to_string(capacity_) +
                            " scores, cannot add " + std::to_string(wanted) +
                            " more (use a larger capacity, or a window to keep only the most recent)");
  }

  void write_ring(std::uint64_t ticket, double score) {
    A1_QB_STRESS_POINT(ticket);
    const std::size_t slot = static_cast<std::size_t>(ticket % window_);
    const std::uint64_t lap = ticket / window_;
    std::atomic<std::uint64_t>& turn = turns_[slot];
    // Wait until ticket - window has committed (a producer holding it may be descheduled).
    for (int spins = 0; turn.load(std::memory_order_acquire) != 2 * lap; ++spins)
      if (spins > 64) std::this_thread::yield();
    turn.store(2 * lap + 1, std::memory_order_relaxed);  // busy: readers skip the slot
    // Release keeps the busy mark ahead of the new value, so a reader that sees the value also
    // sees the turn change and rejects the read (seqlock without standalone fences, which TSan
    // does not model).
    std::atomic_ref<double>(values_[slot]).store(score, std::memory_order_release);
    turn.store(2 * lap + 2, std::memory_order_release);
  }

  // Ring mode: reads slot i; returns its committed turn (> 0) or 0 when empty or being written.
  std::uint64_t read_slot(std::size_t i, double& out) const {
    const std::uint64_t before = turns_[i].load(std::memory_order_acquire);
    if (before < kCommitted || (before & 1)) return 0;
    out = std::atomic_ref<double>(values_[i]).load(std::memory_order_acquire);
    return turns_[i].load(std::memory_order_relaxed) == before ? before : 0;
  }

  std::size_t bound() const {
    return static_cast<std::size_t>(
        std::min<std::uint64_t>(head_.load(std::memory_order_acquire), slots_));
  }

  // Slots [0, prefix) have all committed at least once. Readers extend the prefix over newly
  // committed slots and publish it (acq_rel), so a later reader that loads it may read the
  // unbounded values below it with plain, vectorizable loads.
  std::size_t advance_prefix() const {
    std::uint64_t ready = prefix_.load(std::memory_order_acquire);
    std::uint64_t scanned = ready;
    const std::size_t end = bound();
    while (scanned < end && turns_[scanned].load(std::memory_order_acquire) >= kCommitted) ++scanned;
    while (ready < scanned &&
           !prefix_.compare_exchange_weak(ready, scanned, std::memory_order_acq_rel,
                                          std::memory_order_acquire)) {
    }
    return static_cast<std::size_t>(std::max(ready, scanned));
  }

  // Feeds every committed score to `block` (contiguous, plainly readable runs) or `one`.
  template <class Block, class One>
  void visit(Block&& block, One&& one) const {
    if (window_ == 0) {
      const std::size_t ready = advance_prefix(), end = bound();
      block(values_.get(), ready);
      for (std::size_t i = ready; i < end; ++i)  // committed out of ticket order
        if (turns_[i].load(std::memory_order_acquire) == kCommitted) one(values_[i]);
      return;
    }
    for (std::size_t i = 0, end = bound(); i < end; ++i) {
      double v;
      if (read_slot(i, v)) one(v);
    }
  }

  std::vector<double> collect() const {
    std::vector<double> out;
    out.reserve(bound());
    visit([&](const double* v, std::size_t len) { out.insert(out.end(), v, v + len); },
          [&](double v) { out.push_back(v); });
    return out;
  }

  std::size_t capacity_, window_, slots_;
  std::unique_ptr<double[]> values_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> turns_;
  alignas(64) std::atomic<std::uint64_t> head_{0};          // next ticket; producers contend here
  alignas(64) mutable std::atomic<std::uint64_t> prefix_{0};  // readers' committed-prefix cache
};

}  // namespace a1
