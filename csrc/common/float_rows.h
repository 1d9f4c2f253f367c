// Torch-free conversion of rows of fp32 / bf16 / fp16 elements to fp32 and back, for kernels that
// accept the three storage types but compute in fp32. Plain loops over 32-bit integers: inlined into an
// A1_TARGET_* kernel they auto-vectorize for that ISA, and they need no F16C instructions.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/float_type.h"

namespace a1 {

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

// float -> bf16 bits, round to nearest even, NaN -> quiet NaN: c10::BFloat16's rule.
inline uint16_t float_to_bf16(float x) {
  if (std::isnan(x)) return 0x7fc0;
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// float -> fp16 bits, round to nearest even with subnormals, overflow -> inf, NaN -> quiet NaN:
// c10::Half's (FP16 library's) branch-free conversion. Adding a power-of-two `bias` makes the
// float adder round the mantissa at the half-precision position for both normals and subnormals.
inline uint16_t float_to_fp16(float x) {
  const float scale_to_inf = std::bit_cast<float>(uint32_t{239} << 23);   // 2^112
  const float scale_to_zero = std::bit_cast<float>(uint32_t{17} << 23);  // 2^-110
  float base = (std::fabs(x) * scale_to_inf) * scale_to_zero;
  const uint32_t w = std::bit_cast<uint32_t>(x);
  const uint32_t shl1_w = w + w;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t bias = std::max(shl1_w & 0xff000000u, 0x71000000u);
  base = std::bit_cast<float>((bias >> 1) + 0x07800000u) + base;
  const uint32_t bits = std::bit_cast<uint32_t>(base);
  const uint32_t nonsign = ((bits >> 13) & 0x7c00u) + (bits & 0x0fffu);
  return static_cast<uint16_t>((sign >> 16) | (shl1_w > 0xff000000u ? 0x7e00u : nonsign));
}

// x rounded to the storage type and back (identity for fp32).
inline float round_to(FloatType type, float x) {
  if (type == FloatType::kBFloat16) return bf16_to_float(float_to_bf16(x));
  if (type == FloatType::kFloat16) return fp16_to_float(float_to_fp16(x));
  return x;
}

// dst[0, n) = src[0, n) rounded to a 16-bit type (bf16 or fp16).
inline void narrow_row(FloatType type, const float* src, void* dst, int64_t n) {
  uint16_t* out = static_cast<uint16_t*>(dst);
  if (type == FloatType::kBFloat16) {
    for (int64_t i = 0; i < n; ++i) out[i] = float_to_bf16(src[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = float_to_fp16(src[i]);
  }
}

}  // namespace a1
