// Whether this CPU runs the int8 panel kernels (quant_int8_panels.h): AVX-512 with VNNI, not capped
// by A1_CPU_ISA. Torch-free: module.cpp asks it for Python (load_model packs weights where it holds).
#pragma once
#include "common/simd_wide.h"

namespace a1::quant {

inline bool int8_panels_supported(simd::Isa isa) {
#if A1_HAVE_ISA_DISPATCH
  return isa == simd::Isa::kAvx512 && __builtin_cpu_supports("avx512vnni");
#else
  (void)isa;
  return false;
#endif
}

}  // namespace a1::quant
