// Python bindings of a1::QuantileBuffer, added to a1_ext._C by csrc/module.cpp.
#pragma once

#include <pybind11/pybind11.h>

namespace a1 {

// Binds the class QuantileBuffer into `m` and maps a full buffer (std::length_error) to
// OverflowError. The translator is pybind11-global, so other modules sharing pybind11's internals
// (the test drivers, csrc/quantile/quantile_test_drivers.cpp) raise the same error.
void bind_quantile_buffer(pybind11::module_& m);

}  // namespace a1
