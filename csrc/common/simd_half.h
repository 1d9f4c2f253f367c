// Widening of 16-bit floats (bf16, fp16) to fp32 vectors for the width-generic kernels of
// simd_wide.h (f32x4 / f32x8 / f32x16), so a kernel can stream 16-bit weights and compute in fp32.
//
// bf16 is the top half of an fp32: a 32-bit lane holding the pair (h[2i], h[2i+1]) (little endian)
// yields h[2i] as fp32 by a left shift of 16 and h[2i+1] by masking the low half away. Two integer
// ops per 2W elements and no shuffle: vpmovzxwd, the usual widening, runs on the same port as half of
// a 512-bit FMA. The price is the element order (even, odd), which the other operand must match.
// fp16 needs a real conversion: vcvtph2ps (F16C) on AVX2/AVX-512, bit arithmetic on SSE2.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/simd_wide.h"

namespace a1::simd {

typedef uint32_t u32x4 __attribute__((vector_size(16)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x4 __attribute__((vector_size(8)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));

// The unsigned integer vectors of a float vector's width: 32-bit lanes and 16-bit lanes.
template <class V> struct lanes_of;
template <> struct lanes_of<f32x4> { using u32 = u32x4; using u16 = u16x4; };
template <> struct lanes_of<f32x8> { using u32 = u32x8; using u16 = u16x8; };
template <> struct lanes_of<f32x16> { using u32 = u32x16; using u16 = u16x16; };

// The 2W bf16 at p as fp32: `even` = p[0], p[2], ..., `odd` = p[1], p[3], ... (vector casts between
// vectors of one size reinterpret the bits).
template <class V>
inline void load_bf16_pairs(const uint16_t* p, V& even, V& odd) {
  typename lanes_of<V>::u32 pairs;
  std::memcpy(&pairs, p, sizeof pairs);
  even = (V)(pairs << 16);
  odd = (V)(pairs & 0xffff0000u);
}

namespace detail {
template <int W> struct HalfBlock { uint16_t h[W]; };  // the memory operand of vcvtph2ps
}  // namespace detail

// The W fp16 at p as fp32, exact (normals, subnormals, inf and NaN; float_rows.h's fp16_to_float).
template <class V>
inline V load_fp16(const uint16_t* p) {
  constexpr int W = width_v<V>;
#if A1_HAVE_ISA_DISPATCH
  if constexpr (W >= 8) {  // only instantiated inside A1_TARGET_AVX2 / _AVX512 entries, which have F16C
    V v;
    asm("vcvtph2ps %1, %0" : "=v"(v) : "m"(*reinterpret_cast<const detail::HalfBlock<W>*>(p)));
    return v;
  }
#endif
  using U32 = typename lanes_of<V>::u32;
  typename lanes_of<V>::u16 halves;
  std::memcpy(&halves, p, sizeof halves);
  const U32 bits = __builtin_convertvector(halves, U32);
  const U32 sign = (bits & 0x8000u) << 16, magnitude = bits & 0x7fffu;
  const V finite = (V)(magnitude << 13) * 0x1p112f;  // rebias the exponent, subnormals included
  const U32 special = (magnitude << 13) | 0x7f800000u;  // inf / NaN keep their mantissa
  const U32 out = magnitude >= 0x7c00u ? special : (U32)finite;
  return (V)(out | sign);
}

}  // namespace a1::simd
