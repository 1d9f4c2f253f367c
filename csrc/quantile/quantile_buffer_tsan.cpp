// Standalone multi-producer fuzz of a1::QuantileBuffer, built with -fsanitize=thread by
// `cmake -DA1_TSAN_TEST=ON` (target quantile_buffer_tsan). Producers push distinct integers (half
// one by one, half through extend) while a reader queries concurrently; afterwards the buffer must
// hold exactly the pushed multiset (unbounded) or the values of the last `window` tickets
// (windowed), and every snapshot the reader took must have been a possible state. Any lost,
// duplicated, torn or out-of-order value, or any TSan report, fails. Exit code 0 = pass.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

// Yield between ticket and write (see the header) so that producers really interleave there.
#define A1_QUANTILE_BUFFER_STRESS 1
#include "quantile/quantile_buffer.h"

namespace {

struct Pushed {
  std::uint64_t ticket;
  double value;
};

#ifdef __SANITIZE_THREAD__
constexpr const char* kBuild = "under TSan";
#else
constexpr const char* kBuild = "no TSan";
#endif

bool is_pushed_value(double v, std::size_t total) {
  return v >= 0.0 && v < static_cast<double>(total) && v == std::floor(v);  // torn reads are not
}

// Returns the number of failures; `report` prints a line with the push rate.
int run_case(std::size_t window, int producers, std::size_t per_thread, bool with_reader = true,
             bool report = true) {
  const std::size_t total = static_cast<std::size_t>(producers) * per_thread;
  a1::QuantileBuffer buffer(total, window);
  std::vector<std::vector<Pushed>> pushed(static_cast<std::size_t>(producers));
  std::atomic<int> running{producers};
  std::atomic<int> reader_failures{0};

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < producers; ++t)
    threads.emplace_back([&, t] {
      const std::size_t base = static_cast<std::size_t>(t) * per_thread;
      std::vector<Pushed>& mine = pushed[static_cast<std::size_t>(t)];
      for (std::size_t i = 0; i < per_thread;) {
        if (i % 2 == 0 || i + 3 > per_thread) {  // alternate single pushes and batches of 3
          const double v = static_cast<double>(base + i);
          mine.push_back({buffer.push(v), v});
          i += 1;
        } else {
          double batch[3] = {double(base + i), double(base + i + 1), double(base + i + 2)};
          const std::uint64_t first = buffer.extend(batch, 3);
          for (int j = 0; j < 3; ++j) mine.push_back({first + j, batch[j]});
          i += 3;
        }
      }
      running.fetch_sub(1, std::memory_order_release);
    });
  std::vector<std::vector<double>> seen;  // windowed: the reader's snapshots, checked afterwards
  if (with_reader) threads.emplace_back([&] {  // every observed state must be a possible one
    std::size_t last_size = 0;
    std::vector<double> last_sorted;
    while (running.load(std::memory_order_acquire) > 0) {
      const std::size_t n = buffer.size();
      const double p = buffer.p_value(static_cast<double>(total / 2));
      const double q = buffer.threshold(0.1);
      std::vector<double> snap = buffer.snapshot();
      bool ok = n >= last_size && p > 0.0 && p <= 1.0 && (std::isinf(q) || is_pushed_value(q, total));
      for (double v : snap) ok = ok && is_pushed_value(v, total);
      if (window == 0) {  // committed scores stay: each snapshot contains the previous one
        std::vector<double> sorted = snap;
        std::sort(sorted.begin(), sorted.end());
        ok = ok && std::includes(sorted.begin(), sorted.end(), last_sorted.begin(), last_sorted.end());
        last_sorted = std::move(sorted);
      } else {
        ok = ok && snap.size() <= window;
        if (seen.size() < 20000) seen.push_back(std::move(snap));
      }
      if (!ok) reader_failures.fetch_add(1);
      last_size = n;
    }
  });
  for (std::thread& thread : threads) thread.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  std::vector<Pushed> all;
  for (const auto& mine : pushed) all.insert(all.end(), mine.begin(), mine.end());
  std::sort(all.begin(), all.end(), [](const Pushed& a, const Pushed& b) { return a.ticket < b.ticket; });
  int failures = reader_failures.load();
  for (std::size_t i = 0; i < all.size(); ++i) failures += all[i].ticket != i;  // tickets 0..total-1
  const std::size_t keep = window ? std::min(window, total) : total;
  std::vector<double> expected;
  for (std::size_t i = total - keep; i < total; ++i) expected.push_back(all[i].value);
  const std::vector<double> snap = buffer.snapshot();  // arrival order, so no sort needed
  failures += snap != expected;
  failures += buffer.size() != keep;
  // Windowed: ticket t - window must be evicted by t, never the reverse. So every snapshot lists
  // increasing tickets, and the ticket a slot (ticket % window) holds never goes back in time.
  std::vector<std::uint64_t> ticket_of(total), slot_ticket(window ? window : 1, 0);
  for (const Pushed& item : all) ticket_of[static_cast<std::size_t>(item.value)] = item.ticket;
  for (const std::vector<double>& observed : seen) {
    for (std::size_t i = 0; i < observed.size(); ++i) {
      const std::uint64_t ticket = ticket_of[static_cast<std::size_t>(observed[i])];
      if (i > 0 && ticket <= ticket_of[static_cast<std::size_t>(observed[i - 1])]) ++failures;
      std::uint64_t& latest = slot_ticket[ticket % window];
      if (ticket < latest) ++failures;
      latest = std::max(latest, ticket);
    }
  }
  if (report)
    std::printf("window=%zu producers=%d pushes=%zu: %s in %.2f s, %.3f M pushes/s (with a reader, %s)\n",
                window, producers, total, failures ? "FAIL" : "ok", seconds, total / seconds / 1e6, kBuild);
  return failures;
}

}  // namespace

int main() {
  int failures = 0;
  failures += run_case(/*window=*/0, /*producers=*/4, /*per_thread=*/20000);
  // Rings are slow here (producers wait for each other's turns through yields under TSan), so
  // they get fewer pushes.
  failures += run_case(/*window=*/64, 4, 4000);
  failures += run_case(/*window=*/3, 3, 600);
  failures += run_case(/*window=*/1, 3, 400);  // every push evicts the previous one
  // Many short runs: each one ends with a check that the last write to every slot was the newest
  // ticket, which is where a ring that let ticket t commit after t + window shows up most often.
  int round_failures = 0;
  for (int round = 0; round < 300; ++round)
    round_failures += run_case(/*window=*/1 + round % 3, 3, 12, /*with_reader=*/false, /*report=*/false) != 0;
  std::printf("300 short rounds, windows 1-3: %d failed\n", round_failures);
  failures += round_failures;
  std::printf("%s\n", failures ? "quantile_buffer_tsan: FAILED" : "quantile_buffer_tsan: passed");
  return failures ? 1 : 0;
}
