// Python bindings of a1::QuantileBuffer (see quantile_bindings.h). Deliberately includes no torch
// header (one torch TU costs 30-100 s to compile); tensors arrive as (data_ptr, numel) from the
// Python wrapper in a1_ext/quantile.py.
#include "quantile/quantile_bindings.h"

#include <pybind11/numpy.h>

#include <cstdint>
#include <exception>
#include <memory>
#include <stdexcept>
#include <vector>

#include "quantile/quantile_buffer.h"

namespace py = pybind11;

namespace a1 {

void bind_quantile_buffer(py::module_& m) {
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
}

}  // namespace a1
