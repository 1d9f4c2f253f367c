// Torch-free integer decode path of a1::quant_linear (few token rows, AVX2 / AVX-512 VNNI): each
// 32-weight group is unpacked to 32 unsigned bytes and multiplied by the token row's 8-bit group
// (quant_activations.h) in one integer dot product (vpdpbusd; AVX2 without VNNI: vpmaddubsw +
// vpmaddwd), then scaled by d_w * d_x into a float accumulator: llama.cpp's vec_dot, ~12 operations
// per group where decoding to fp32 takes ~2 per weight (quant_gemv_kernels.h).
//
// Weights are unsigned 0..63 after unpacking; a format's zero point (Q4_0: 8, Q6_K: 32, Q8_0 with
// VNNI: 128 after flipping the sign bit) is taken off through the dot product's accumulator input,
// -zero_point * (sums of each 4 activations), computed when the row is rounded; a min (Q4_1 m, Q4_K / Q5_K
// dmin * min) adds min * sum(x) per group. 256-bit vectors: Intel cores issue them on three ports
// where 512-bit ones get two, and a group is exactly one.
#pragma once
#include <cstdint>

#include "quant/quant_activations.h"
#include "quant/quant_gemv_kernels.h"
#include "quant/quant_int8_pairs.h"

#if A1_HAVE_ISA_DISPATCH
#include <immintrin.h>

#define A1_AVX2_FN __attribute__((target("avx2,fma,f16c"))) inline
#define A1_VNNI_FN __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c"))) inline

namespace a1::quant {

// A group's scale for weights 0-15 and 16-31 (equal but for Q6_K) and its min (0 if none).
struct GroupScale {
  float lo, hi, min;
};

A1_AVX2_FN float half_value(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, sizeof bits);
  return _cvtsh_ss(bits);
}
A1_AVX2_FN __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
A1_AVX2_FN __m256i nibbles_of_16(const uint8_t* p) {  // bytes 0-15: low nibbles, 16-31: high nibbles
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), _mm256_set1_epi8(0x0F));
}
A1_AVX2_FN __m256i bits_of(__m256i bytes, int shift, int mask) {  // (b >> shift) & mask per byte
  return _mm256_and_si256(_mm256_srli_epi16(bytes, shift), _mm256_set1_epi8(static_cast<char>(mask)));
}

// Group `sub` of a block as 32 unsigned bytes (the format's zero point not yet taken off).
template <Format F, bool SignedQ8>
A1_AVX2_FN __m256i unpack_group(const uint8_t* block, int sub, GroupScale* s) {
  if constexpr (F == Format::kQ4_0 || F == Format::kQ4_1) {
    s->lo = s->hi = half_value(block);
    s->min = F == Format::kQ4_1 ? half_value(block + 2) : 0.0f;
    return nibbles_of_16(block + (F == Format::kQ4_0 ? 2 : 4));
  } else if constexpr (F == Format::kQ8_0) {
    s->lo = s->hi = half_value(block);
    s->min = 0.0f;
    const __m256i q = load32(block + 2);  // int8; unsigned with VNNI after flipping the sign bit
    return SignedQ8 ? q : _mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80)));
  } else if constexpr (F == Format::kQ4_K || F == Format::kQ5_K) {
    int scale, min;
    k4_scale_min(sub, block + 4, &scale, &min);
    s->lo = s->hi = half_value(block) * static_cast<float>(scale);
    s->min = -(half_value(block + 2) * static_cast<float>(min));
    __m256i q = bits_of(load32(block + (F == Format::kQ4_K ? 16 : 48) + 32 * (sub / 2)), 4 * (sub % 2), 0x0F);
    if constexpr (F == Format::kQ5_K) q = _mm256_or_si256(q, _mm256_slli_epi16(bits_of(load32(block + 16), sub, 1), 4));
    return q;
  } else {  // Q6_K
    const float d = half_value(block + 208);
    s->lo = d * static_cast<float>(static_cast<int8_t>(block[192 + 2 * sub]));
    s->hi = d * static_cast<float>(static_cast<int8_t>(block[193 + 2 * sub]));
    s->min = 0.0f;
    const int g = sub / 4;
    const __m256i lo = bits_of(load32(block + 64 * g + (sub % 2) * 32), 4 * ((sub / 2) % 2), 0x0F);
    const __m256i hi = bits_of(load32(block + 128 + 32 * g), 2 * (sub % 4), 0x03);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
  }
}

// The zero point a format's unpacked bytes carry (taken off through the accumulator input).
template <Format F, bool SignedQ8>
constexpr int zero_point() {
  return F == Format::kQ4_0 ? 8 : F == Format::kQ6_K ? 32 : (F == Format::kQ8_0 && !SignedQ8) ? 128 : 0;
}

A1_AVX2_FN __m256i dot_avx2(__m256i init, __m256i w, __m256i x) {  // w unsigned bytes, x signed
  return _mm256_add_epi32(init, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
}
A1_AVX2_FN __m256i dot_avx2_signed(__m256i init, __m256i w, __m256i x) {  // both signed: |w| * sign(x, w)
  return dot_avx2(init, _mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}
A1_VNNI_FN __m256i dot_vnni(__m256i init, __m256i w, __m256i x) { return _mm256_dpbusd_epi32(init, w, x); }

A1_AVX2_FN __m256 scale_vector(const GroupScale& s, float dx, bool halves) {
  return halves ? _mm256_set_m128(_mm_set1_ps(s.hi * dx), _mm_set1_ps(s.lo * dx)) : _mm256_set1_ps(s.lo * dx);
}
A1_AVX2_FN __m256 scaled_add(__m256i dot, __m256 scale, __m256 acc) {
  return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, acc);
}
A1_AVX2_FN float sum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
A1_AVX2_FN __m256 zero8() { return _mm256_setzero_ps(); }
A1_AVX2_FN __m256i load_lanes(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// R weight rows x TT token rows from token row t0; xq[t] is token row t's Q8Row, its offsets made
// laid out for this format (int8_rows_layout).
template <Format F, bool Vnni, int R, int TT>
inline void int8_tile(const QuantGemmParams& p, const Q8Row* xq, int64_t n, int64_t t0) {
  constexpr bool kSignedQ8 = !Vnni;
  constexpr int G = groups_per_block<F>;
  const int64_t groups = p.in_features / kGroup;
  __m256 acc[R][TT];
  float corr[R][TT];
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < TT; ++t) acc[r][t] = zero8(), corr[r][t] = 0.0f;
  for (int64_t g = 0; g < groups; ++g) {
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      GroupScale s;
      const uint8_t* block = p.weight + (n + r) * p.row_bytes + (g / G) * format_info(F).block_bytes;
      const __m256i w = unpack_group<F, kSignedQ8>(block, static_cast<int>(g % G), &s);
#pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        const Q8Row& x = xq[t0 + t];
        const __m256i init = load_lanes(x.offsets + 8 * g), xv = load32(reinterpret_cast<const uint8_t*>(x.q) + kGroup * g);
        __m256i dot;
        if constexpr (Vnni) {
          dot = dot_vnni(init, w, xv);
        } else if constexpr (F == Format::kQ8_0) {
          dot = dot_avx2_signed(init, w, xv);
        } else {
          dot = dot_avx2(init, w, xv);
        }
        acc[r][t] = scaled_add(dot, scale_vector(s, x.d[g], F == Format::kQ6_K), acc[r][t]);
        if constexpr (F == Format::kQ4_1 || F == Format::kQ4_K || F == Format::kQ5_K) corr[r][t] += s.min * x.sum[g];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    const float bias = p.bias != nullptr ? p.bias[n + r] : 0.0f;
    for (int t = 0; t < TT; ++t) p.out[(t0 + t) * p.out_features + n + r] = sum8(acc[r][t]) + corr[r][t] + bias;
  }
}

// Weight rows [n_begin, n_end) for every token row, in blocks of R rows and tiles of TT tokens.
template <Format F, bool Vnni, int R, int TT>
inline void int8_rows(const QuantGemmParams& p, const Q8Row* xq, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + R <= n_end; n += R) {
    int64_t t = 0;
    for (; t + TT <= p.tokens; t += TT) int8_tile<F, Vnni, R, TT>(p, xq, n, t);
    for (; t < p.tokens; ++t) int8_tile<F, Vnni, R, 1>(p, xq, n, t);
  }
  for (; n < n_end; ++n)
    for (int64_t t = 0; t < p.tokens; ++t) int8_tile<F, Vnni, 1, 1>(p, xq, n, t);
}

// With VNNI the 32-weight block formats run the 512-bit pair kernel (quant_int8_pairs.h).
#define A1_INT8_ENTRY(name, target, VNNI)                                                                      \
  target __attribute__((flatten)) void name(const QuantGemmParams& p, const Q8Row* xq, int64_t b, int64_t e) { \
    switch (p.format) {                                                                                        \
      case Format::kQ4_0: if constexpr (VNNI) return pair_rows<Format::kQ4_0>(p, xq, b, e); else return int8_rows<Format::kQ4_0, VNNI, 4, 2>(p, xq, b, e); \
      case Format::kQ4_1: if constexpr (VNNI) return pair_rows<Format::kQ4_1>(p, xq, b, e); else return int8_rows<Format::kQ4_1, VNNI, 4, 2>(p, xq, b, e); \
      case Format::kQ8_0: if constexpr (VNNI) return pair_rows<Format::kQ8_0>(p, xq, b, e); else return int8_rows<Format::kQ8_0, VNNI, 4, 2>(p, xq, b, e); \
      case Format::kQ4_K: return int8_rows<Format::kQ4_K, VNNI, 4, 2>(p, xq, b, e);                           \
      case Format::kQ5_K: return int8_rows<Format::kQ5_K, VNNI, 4, 2>(p, xq, b, e);                           \
      case Format::kQ6_K: return int8_rows<Format::kQ6_K, VNNI, 4, 2>(p, xq, b, e);                           \
    }                                                                                                          \
  }
A1_INT8_ENTRY(int8_rows_vnni, A1_VNNI_FN, true)
A1_INT8_ENTRY(int8_rows_avx2, A1_AVX2_FN, false)
#undef A1_INT8_ENTRY

}  // namespace a1::quant
#endif  // A1_HAVE_ISA_DISPATCH

namespace a1::quant {

using Int8RowsFn = void (*)(const QuantGemmParams&, const Q8Row*, int64_t, int64_t);

// The integer decode kernel for this CPU (capped by A1_CPU_ISA like every kernel), nullptr where
// there is none (baseline x86-64, other architectures): the fp32 decode kernel serves there.
inline Int8RowsFn select_int8_rows(simd::Isa isa) {
#if A1_HAVE_ISA_DISPATCH
  if (isa == simd::Isa::kAvx512 && __builtin_cpu_supports("avx512vnni")) return int8_rows_vnni;
  if (isa == simd::Isa::kAvx512 || isa == simd::Isa::kAvx2) return int8_rows_avx2;
#endif
  (void)isa;
  return nullptr;
}

// How the kernel `fn` reads rounded rows of `format`: the zero point it takes off (Q8_0's depends
// on whether it has VNNI) and, with VNNI, the Q4 formats' quads (quant_int8_pairs.h).
inline Q8Layout int8_rows_layout(Format format, Int8RowsFn fn) {
  const bool vnni = false
#if A1_HAVE_ISA_DISPATCH
                    || fn == int8_rows_vnni
#endif
      ;
  const bool q4 = format == Format::kQ4_0 || format == Format::kQ4_1;
  switch (format) {
    case Format::kQ4_0: return {8, vnni};
    case Format::kQ6_K: return {32, false};
    case Format::kQ8_0: return {vnni ? 128 : 0, false};
    default: return {0, vnni && q4};
  }
}

}  // namespace a1::quant
