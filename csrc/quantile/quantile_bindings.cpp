// pybind11 module a1_ext._C: QuantileBuffer plus two C++-side drivers for its benchmark and fuzz
// tests. Deliberately includes no torch header (one torch TU costs 30-100 s to compile); tensors
// arrive as (data_ptr, numel) from the Python wrapper in a1_ext/quantile.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <thread>
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
  if (num_threads < 1) throw std::invalid_argument("_fuzz_push: num_threads must be >= 1");
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

PYBIND11_MODULE(_C, m) {
  m.doc() = "a1_ext compiled library: torch ops (torch.ops.a1.*) and QuantileBuffer";
  // A full buffer is an overflow of its capacity; pybind11 would otherwise map it to ValueError.
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const std::length_error& full) {
      PyErr_SetString(PyExc_OverflowError, full.what());
    }
  });
  using nogil = py::call_guard<py::gil_scoped_release>;

  py::class_<QuantileBuffer>(m, "QuantileBuffer", "Lock-free conformal score buffer (see a1_ext.quantile)")
      .def(py::init<std::size_t, std::size_t>(), py::arg("capacity"), py::arg("window") = 0)
      .def_property_readonly("capacity", &QuantileBuffer::capacity)
      .def_property_readonly("window", &QuantileBuffer::window)
      .def("push", &QuantileBuffer::push, py::arg("score"), nogil())
      .def(
          "extend",
          [](QuantileBuffer& buffer, std::uintptr_t data_ptr, std::size_t numel) {
            // The caller keeps the float64 storage alive for the call (a1_ext.quantile does).
            return buffer.extend(reinterpret_cast<const double*>(data_ptr), numel);
          },
          py::arg("data_ptr"), py::arg("numel"), nogil())
      .def("size", &QuantileBuffer::size, nogil())
      .def("threshold", &QuantileBuffer::threshold, py::arg("alpha"), nogil())
      .def("p_value", &QuantileBuffer::p_value, py::arg("score"), py::arg("smoothed") = false,
           py::arg("u") = 1.0, nogil())
      .def("snapshot", [](const QuantileBuffer& buffer) {
        auto scores = std::make_unique<std::vector<double>>();
        {
          py::gil_scoped_release nogil_scope;
          *scores = buffer.snapshot();
        }
        std::vector<double>* raw = scores.get();
        py::capsule owner(scores.release(), [](void* p) { delete static_cast<std::vector<double>*>(p); });
        return py::array_t<double>(static_cast<py::ssize_t>(raw->size()), raw->data(), owner);
      });

  m.def("_conformal_rank", &QuantileBuffer::conformal_rank, py::arg("n"), py::arg("alpha"),
        "k = ceil((n + 1)(1 - alpha)) as QuantileBuffer.threshold computes it (for tests)");
  m.def("_push_benchmark", &push_benchmark, py::arg("n"), py::arg("window") = 0,
        "seconds taken by n single-threaded pushes into a fresh buffer");
  m.def("_fuzz_push", &fuzz_push, py::arg("buffer"), py::arg("num_threads"), py::arg("per_thread"),
        py::arg("chunk") = 0, "concurrent pushes of distinct values; returns (tickets by value, seconds)");
}
