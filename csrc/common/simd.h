// Torch-free numeric helpers for the CPU kernels. Hot loops use GCC/Clang vector extensions
// (8 floats, lowered to AVX2 or to pairs of SSE registers) inside A1_MULTIVERSION functions.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/multiversion.h"

namespace a1::simd {

constexpr int kWidth = 8;
typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));

inline f32x8 broadcast(float value) { return f32x8{} + value; }

inline f32x8 load(const float* p) {
  f32x8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store(float* p, f32x8 v) { std::memcpy(p, &v, sizeof v); }

inline f32x8 max(f32x8 a, f32x8 b) { return a > b ? a : b; }

inline float horizontal_sum(f32x8 v) {
  float s = 0.0f;
  for (int i = 0; i < kWidth; ++i) s += v[i];
  return s;
}

inline float horizontal_max(f32x8 v) {
  float m = v[0];
  for (int i = 1; i < kWidth; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

// exp(x) for x <= 0 (softmax arguments after subtracting the max), relative error < 2e-7.
// Returns 0 below -87 (float underflow) and for -inf. Cephes expf: x = n ln2 + r, exp(r) by a
// minimax polynomial on [-ln2/2, ln2/2], 2^n built in the exponent bits.
inline f32x8 exp_nonpositive(f32x8 x) {
  const f32x8 lowest = broadcast(-87.0f);
  const f32x8 clamped = x < lowest ? lowest : x;
  const f32x8 magic = broadcast(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  const f32x8 rounded = (clamped * 1.44269504088896341f + magic) - magic;
  const f32x8 r = clamped - rounded * 0.693359375f + rounded * 2.12194440e-4f;
  f32x8 p = broadcast(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const i32x8 exponent = (__builtin_convertvector(rounded, i32x8) + 127) << 23;
  f32x8 two_n;
  std::memcpy(&two_n, &exponent, sizeof two_n);
  return x < lowest ? broadcast(0.0f) : p * two_n;
}

inline float exp_nonpositive(float x) {
  return exp_nonpositive(broadcast(x))[0];
}

}  // namespace a1::simd
