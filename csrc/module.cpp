// The pybind11 module a1_ext._C. Loading this library also runs the static TORCH_LIBRARY
// registrations of csrc/ops.cpp and every family's *_cpu.cpp / *_cuda.cpp / *_composite.cpp glue,
// so torch.ops.a1.* exist once `import a1_ext._C` returns; this file only adds the Python classes.
// It includes no torch header: one torch translation unit costs 30-100 s to compile.
#include <pybind11/pybind11.h>

#include "quant/quant_amx_panels.h"
#include "quant/quant_panel_support.h"
#include "quantile/quantile_bindings.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "a1_ext compiled library: torch ops (torch.ops.a1.*) and QuantileBuffer";
  a1::bind_quantile_buffer(m);
  m.def("int8_panels_supported", [] { return a1::quant::int8_panels_supported(a1::simd::select_isa()); },
        "Whether this CPU runs quant_linear's int8 panel kernels (AVX-512 VNNI, A1_CPU_ISA permitting): "
        "where it does, load_model packs Q4_0 / Q4_1 / Q8_0 weights into panels");
  m.def("amx_int8_ready", [] { return a1::quant::amx_int8_ready(); },
        "Whether quant_linear multiplies packed panels by AMX tiles from 16 token rows (AMX-INT8, the "
        "tile state granted by Linux, A1_CPU_ISA unset)");
}
