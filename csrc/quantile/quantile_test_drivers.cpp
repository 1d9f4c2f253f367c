// pybind11 module _quantile_drivers: C++-side drivers of QuantileBuffer for its tests and
// benchmarks (tests/a1_ext/test_quantile_buffer.py, benchmarks/bench_quantile_buffer.py). Built
// only for tests (setup.py with A1_TEST_DRIVERS=1, into tests/a1_ext/), never into a wheel: a
// shipped module has no use for them. It takes the a1_ext._C.QuantileBuffer objects themselves,
// which works because both modules share pybind11's internals (same headers, compiler and flags).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "quantile/quantile_buffer.h"

namespace py = pybind11;
using a1::QuantileBuffer;

namespace {

// Pushes 0..n-1 into a fresh buffer in a tight loop; returns the seconds the loop took.
double push_benchmark(std::size_t n, std::size_t window) {
  QuantileBuffer buffer(window ? window : n, window);
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < n; ++i) buffer.push(static_cast<double>(i));
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count();
}

// num_threads std::threads push the distinct values t * per_thread + i concurrently (in batches of
// `chunk` through extend when chunk > 0). Returns (ticket of each value, seconds).
std::pair<py::array_t<std::int64_t>, double> fuzz_push(QuantileBuffer& buffer, int num_threads,
                                                       std::size_t per_thread, std::size_t chunk) {
  if (num_threads < 1) throw std::invalid_argument("fuzz_push: num_threads must be >= 1");
  std::vector<std::int64_t> tickets(static_cast<std::size_t>(num_threads) * per_thread, -1);
  std::vector<std::exception_ptr> errors(static_cast<std::size_t>(num_threads));
  double seconds;
  {
    py::gil_scoped_release nogil;
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < num_threads; ++t)
      threads.emplace_back([&, t] {
        try {
          const std::size_t base = static_cast<std::size_t>(t) * per_thread;
          std::vector<double> batch;
          for (std::size_t i = 0; i < per_thread;) {
            const std::size_t len = chunk ? std::min(chunk, per_thread - i) : 1;
            batch.resize(len);
            for (std::size_t j = 0; j < len; ++j) batch[j] = static_cast<double>(base + i + j);
            const std::uint64_t first = chunk ? buffer.extend(batch.data(), len) : buffer.push(batch[0]);
            for (std::size_t j = 0; j < len; ++j) tickets[base + i + j] = static_cast<std::int64_t>(first + j);
            i += len;
          }
        } catch (...) {
          errors[static_cast<std::size_t>(t)] = std::current_exception();
        }
      });
    for (std::thread& thread : threads) thread.join();
    seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  for (const std::exception_ptr& error : errors)
    if (error) std::rethrow_exception(error);
  return {py::array_t<std::int64_t>(static_cast<py::ssize_t>(tickets.size()), tickets.data()), seconds};
}

}  // namespace

PYBIND11_MODULE(_quantile_drivers, m) {
  m.doc() = "test drivers of a1_ext._C.QuantileBuffer (built for tests only, never shipped)";
  m.def("conformal_rank", &QuantileBuffer::conformal_rank, py::arg("n"), py::arg("alpha"),
        "k = ceil((n + 1)(1 - alpha)) as QuantileBuffer.threshold computes it");
  m.def("push_benchmark", &push_benchmark, py::arg("n"), py::arg("window") = 0,
        "seconds taken by n single-threaded pushes into a fresh buffer");
  m.def("fuzz_push", &fuzz_push, py::arg("buffer"), py::arg("num_threads"), py::arg("per_thread"),
        py::arg("chunk") = 0, "concurrent pushes of distinct values; returns (tickets by value, seconds)");
}
