// Torch-free conversion of rows of fp32 / bf16 / fp16 elements to fp32, for kernels that accept
// the three storage types but accumulate in fp32. Plain loops over 32-bit integers: inlined into an
// A1_TARGET_* kernel they auto-vectorize for that ISA, and they need no F16C instructions.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>

namespace a1 {

enum class FloatType : int { kFloat32, kBFloat16, kFloat16 };

inline int float_type_size(FloatType type) { return type == FloatType::kFloat32 ? 4 : 2; }

inline float bf16_to_float(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// Exact for every half value: normals and subnormals scale by 2^112 after moving the exponent and
// mantissa into float position; inf/NaN keep their mantissa under an all-ones exponent.
inline float fp16_to_float(uint16_t bits) {
  const uint32_t sign = (static_cast<uint32_t>(bits) & 0x8000u) << 16;
  const uint32_t magnitude = static_cast<uint32_t>(bits) & 0x7fffu;
  const float finite = std::bit_cast<float>(magnitude << 13) * 0x1p112f;
  const uint32_t special = (magnitude << 13) | 0x7f800000u;
  const uint32_t out = magnitude >= 0x7c00u ? special : std::bit_cast<uint32_t>(finite);
  return std::bit_cast<float>(out | sign);
}

// dst[0, n) = scale * src[0, n) as fp32, then dst[n, padded) = 0 (so SIMD loops may run over
// whole vectors). src points at the first element of a contiguous row.
inline void widen_row(const void* src, FloatType type, float scale, float* dst, int n, int padded) {
  if (type == FloatType::kFloat32) {
    const float* s = static_cast<const float*>(src);
    for (int i = 0; i < n; ++i) dst[i] = s[i] * scale;
  } else if (type == FloatType::kBFloat16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]) * scale;
  } else {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    for (int i = 0; i < n; ++i) dst[i] = fp16_to_float(s[i]) * scale;
  }
  for (int i = n; i < padded; ++i) dst[i] = 0.0f;
}

// Same without scaling (the K/V rows): a plain copy for fp32.
inline void widen_row(const void* src, FloatType type, float* dst, int n, int padded) {
  if (type == FloatType::kFloat32) {
    std::memcpy(dst, src, sizeof(float) * n);
    for (int i = n; i < padded; ++i) dst[i] = 0.0f;
    return;
  }
  widen_row(src, type, 1.0f, dst, n, padded);
}

}  // namespace a1
