// The pybind11 module a1_ext._C. Loading this library also runs the static TORCH_LIBRARY
// registrations of csrc/ops.cpp and every family's *_cpu.cpp / *_cuda.cpp / *_composite.cpp glue,
// so torch.ops.a1.* exist once `import a1_ext._C` returns; this file only adds the Python classes.
// It includes no torch header: one torch translation unit costs 30-100 s to compile.
#include <pybind11/pybind11.h>

#include "quantile/quantile_bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "a1_ext compiled library: torch ops (torch.ops.a1.*) and QuantileBuffer";
  a1::bind_quantile_buffer(m);
}
