// Vectorized decoding of GGUF blocks, 32 weights (one group) at a time, for the CPU kernels:
// decode_group<F, V, Exact>(block, sub, out) writes weights [32 sub, 32 sub + 32) of a block as
// 32 / W float vectors of width W (f32x4 / f32x8 / f32x16; the kernels instantiate one width per
// instruction set, common/simd_wide.h).
//
// Every format is 32-weight groups of small integers with a scale (and a min) per group (Q6_K: per
// 16 weights), so one template serves the dequantize op, the decode kernel (weights decoded in
// registers and multiplied straight into the token rows) and the GEMM path (decoded into panels).
// Exact = true computes each weight exactly as quant_formats.h (and gguf) does; Exact = false lets
// the compiler fuse d * q + m into one FMA (the matmul kernels: the sums differ in rounding anyway).
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#include <immintrin.h>
#endif

#include "common/simd_wide.h"
#include "quant/quant_formats.h"

namespace a1::quant {

// Integer vector types of the same lane count as a float vector V.
template <int W>
struct Lanes;
template <>
struct Lanes<4> {
  typedef uint8_t u8 __attribute__((vector_size(4)));
  typedef int8_t s8 __attribute__((vector_size(4)));
  typedef int32_t i32 __attribute__((vector_size(16)));
};
template <>
struct Lanes<8> {
  typedef uint8_t u8 __attribute__((vector_size(8)));
  typedef int8_t s8 __attribute__((vector_size(8)));
  typedef int32_t i32 __attribute__((vector_size(32)));
};
template <>
struct Lanes<16> {
  typedef uint8_t u8 __attribute__((vector_size(16)));
  typedef int8_t s8 __attribute__((vector_size(16)));
  typedef int32_t i32 __attribute__((vector_size(64)));
};

template <class V>
using I32 = typename Lanes<simd::width_v<V>>::i32;

// W bytes at p, zero-extended (load_u8) or sign-extended (load_s8) to int32 lanes. GCC 12 lowers
// __builtin_convertvector from bytes to int32 lane by lane (vpinsrd), so the x86 widths use the
// one-instruction widening loads (vpmovzxbd / vpmovsxbd; SSE2 unpacks).
template <class V>
inline I32<V> load_u8(const uint8_t* p) {
  I32<V> out;
#pragma GCC unroll 16
  for (int i = 0; i < simd::width_v<V>; ++i) out[i] = p[i];
  return out;
}
template <class V>
inline I32<V> load_s8(const uint8_t* p) {
  I32<V> out;
#pragma GCC unroll 16
  for (int i = 0; i < simd::width_v<V>; ++i) out[i] = static_cast<int8_t>(p[i]);
  return out;
}

#if A1_HAVE_ISA_DISPATCH
#define A1_QUANT_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c")))
template <>
A1_QUANT_AVX512 inline I32<simd::f32x16> load_u8<simd::f32x16>(const uint8_t* p) {
  return (I32<simd::f32x16>)_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <>
A1_QUANT_AVX512 inline I32<simd::f32x16> load_s8<simd::f32x16>(const uint8_t* p) {
  return (I32<simd::f32x16>)_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
template <>
__attribute__((target("avx2,fma,f16c"))) inline I32<simd::f32x8> load_u8<simd::f32x8>(const uint8_t* p) {
  return (I32<simd::f32x8>)_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
template <>
__attribute__((target("avx2,fma,f16c"))) inline I32<simd::f32x8> load_s8<simd::f32x8>(const uint8_t* p) {
  return (I32<simd::f32x8>)_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
template <>
inline I32<simd::f32x4> load_u8<simd::f32x4>(const uint8_t* p) {
  int32_t word;
  std::memcpy(&word, p, sizeof word);
  const __m128i zero = _mm_setzero_si128();
  return (I32<simd::f32x4>)_mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(word), zero), zero);
}
template <>
inline I32<simd::f32x4> load_s8<simd::f32x4>(const uint8_t* p) {
  int32_t word;
  std::memcpy(&word, p, sizeof word);
  const __m128i bytes = _mm_cvtsi32_si128(word);
  const __m128i words = _mm_srai_epi16(_mm_unpacklo_epi8(bytes, bytes), 8);
  return (I32<simd::f32x4>)_mm_srai_epi32(_mm_unpacklo_epi16(words, words), 16);
}
#undef A1_QUANT_AVX512
#endif

// The float16 at p as a float, broadcast to every lane: by the F16C instruction on the AVX widths
// (the scalar bit manipulation of quant_formats.h costs more than decoding the group it scales).
template <class V>
inline float half_at(const uint8_t* p) {
  return load_half(p);
}
#if A1_HAVE_ISA_DISPATCH
template <>
__attribute__((target("avx2,fma,f16c"))) inline float half_at<simd::f32x8>(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return _cvtsh_ss(bits);
}
template <>
__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma,f16c"))) inline float half_at<simd::f32x16>(
    const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return _cvtsh_ss(bits);
}
#endif

template <class V>
inline V to_float(I32<V> v) {
  return __builtin_convertvector(v, V);
}

// v as computed: a barrier against contracting the product into the next add (Exact decoding).
template <class V>
inline V rounded(V v) {
#if A1_HAVE_ISA_DISPATCH
  if constexpr (simd::width_v<V> == 16) {
    asm("" : "+v"(v));
  } else {
    asm("" : "+x"(v));
  }
#endif
  return v;
}

template <class V, bool Exact>
inline V mul_add(V a, V b, V c) {  // a * b + c
  if constexpr (Exact) return rounded(a * b) + c;
  return a * b + c;
}

// Group `sub` of a block as 32 / W vectors: out[v] holds weights [32 sub + v W, 32 sub + (v + 1) W).
template <Format F, class V, bool Exact>
inline void decode_group(const uint8_t* block, int sub, V* out) {
  constexpr int W = simd::width_v<V>, NV = kGroup / W;
  if constexpr (F == Format::kQ4_0 || F == Format::kQ4_1) {
    constexpr int qs_offset = F == Format::kQ4_0 ? 2 : 4;
    const V d = simd::vbroadcast<V>(half_at<V>(block));
    const V m = simd::vbroadcast<V>(F == Format::kQ4_1 ? half_at<V>(block + 2) : 0.0f);
  #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const int start = v * W;  // low nibbles hold weights 0-15, high nibbles 16-31
      const I32<V> bytes = load_u8<V>(block + qs_offset + (start < 16 ? start : start - 16));
      const I32<V> q = start < 16 ? (bytes & 0xF) : (bytes >> 4);
      if constexpr (F == Format::kQ4_0) {
        out[v] = d * to_float<V>(q - 8);
      } else {
        out[v] = mul_add<V, Exact>(d, to_float<V>(q), m);
      }
    }
  } else if constexpr (F == Format::kQ8_0) {
    const V d = simd::vbroadcast<V>(half_at<V>(block));
  #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) out[v] = to_float<V>(load_s8<V>(block + 2 + v * W)) * d;
  } else if constexpr (F == Format::kQ4_K || F == Format::kQ5_K) {
    int scale, min;
    k4_scale_min(sub, block + 4, &scale, &min);
    const V d = simd::vbroadcast<V>(quant_round(half_at<V>(block) * static_cast<float>(scale)));
    const V dm = simd::vbroadcast<V>(quant_round(half_at<V>(block + 2) * static_cast<float>(min)));
    const uint8_t* qs = block + (F == Format::kQ4_K ? 16 : 48) + 32 * (sub / 2);
    const int shift = 4 * (sub % 2);
  #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      I32<V> q = (load_u8<V>(qs + v * W) >> shift) & 0xF;
      if constexpr (F == Format::kQ5_K) q |= ((load_u8<V>(block + 16 + v * W) >> sub) & 1) << 4;
      out[v] = mul_add<V, Exact>(d, to_float<V>(q), -dm);
    }
  } else if constexpr (F == Format::kQ6_K) {
    const int g = sub / 4;
    const uint8_t* ql = block + 64 * g + (sub % 2) * 32;
    const uint8_t* qh = block + 128 + 32 * g;
    const int lo_shift = 4 * ((sub / 2) % 2), hi_shift = 2 * (sub % 4);
    const float d_all = half_at<V>(block + 208);
  #pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      const int start = v * W;  // a scale per 16 weights
      const float scale = static_cast<float>(static_cast<int8_t>(block[192 + 2 * sub + start / 16]));
      const V d = simd::vbroadcast<V>(quant_round(d_all * scale));
      const I32<V> lo = (load_u8<V>(ql + start) >> lo_shift) & 0xF;
      const I32<V> hi = (load_u8<V>(qh + start) >> hi_shift) & 3;
      out[v] = d * to_float<V>((lo | (hi << 4)) - 32);
    }
  }
}

// Groups per block of a format.
template <Format F>
constexpr int groups_per_block = format_info(F).block_size / kGroup;

// Weights [32 g, 32 g + 32) of a row of blocks (g counts groups along the whole row).
template <Format F, class V, bool Exact>
inline void decode_row_group(const uint8_t* row, int64_t g, V* out) {
  constexpr int G = groups_per_block<F>;
  decode_group<F, V, Exact>(row + (g / G) * format_info(F).block_bytes, static_cast<int>(g % G), out);
}

// Calls fn.template operator()<F>() with the compile-time format of `f` (one instantiation each).
template <class Fn>
inline void dispatch_format(Format f, Fn&& fn) {
  switch (f) {
    case Format::kQ4_0: fn.template operator()<Format::kQ4_0>(); break;
    case Format::kQ4_1: fn.template operator()<Format::kQ4_1>(); break;
    case Format::kQ8_0: fn.template operator()<Format::kQ8_0>(); break;
    case Format::kQ4_K: fn.template operator()<Format::kQ4_K>(); break;
    case Format::kQ5_K: fn.template operator()<Format::kQ5_K>(); break;
    case Format::kQ6_K: fn.template operator()<Format::kQ6_K>(); break;
  }
}

}  // namespace a1::quant
