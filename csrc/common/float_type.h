// The one tag for the floating element types the kernels read and write (logits, activations,
// caches), shared by the CPU kernels and the CUDA launchers. Torch-free, so both sides include it
// cheaply; the glue maps at::ScalarType onto it once (common/checks.h: float_type_of).
#pragma once
#include <cstdint>

namespace a1 {

// Values are fixed: the CUDA emulator's test entry points pass them as integers.
enum class FloatType : int32_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

inline int float_type_size(FloatType type) { return type == FloatType::kFloat32 ? 4 : 2; }

}  // namespace a1
