// The 512-bit integer decode kernel of a1::quant_linear for the 32-weight block formats (Q4_0,
// Q4_1, Q8_0) on CPUs with AVX-512 VNNI. Q8_0: two consecutive groups of a weight row are one
// 64-byte vector (lanes 0-7 group 2 h, lanes 8-15 group 2 h + 1) multiplied by the token row's 64
// rounded bytes in one vpdpbusd. Q4_0 / Q4_1: four groups' 16 nibble bytes fill one vector, whose
// low and high nibbles are two vpdpbusd against the token's bytes laid out to match (quad_q), so
// unpacking needs no cross-lane shuffle. The dot-product vectors of 16 groups are then summed
// within each group by a shuffle tree (reduce_groups, reduce_quads), leaving one int32 per group in one vector, and the
// groups' float16 scales (and Q4_1's mins) come in one gather: scaling costs a few instructions per
// 16 groups instead of several per group, the scalar work that bounds the 256-bit kernel of
// quant_int8_kernels.h at batch 1. A token costs ~5 instructions per 64 weights where decoding the
// weights to fp32 costs ~24 (quant_gemv_kernels.h).
#pragma once
#include <algorithm>
#include <cstring>

#include "quant/quant_activations.h"
#include "quant/quant_gemv_kernels.h"

#if A1_HAVE_ISA_DISPATCH
#include <immintrin.h>

#define A1_ZMM_FN __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c"))) inline

namespace a1::quant {

// Q8_0 groups 2 h (block b0) and 2 h + 1 (block b1) as 64 unsigned bytes in weight order: the
// sign bit flipped (q + 128, taken off by the zero point).
A1_ZMM_FN __m512i unpack_q8_pair(const uint8_t* b0, const uint8_t* b1) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b1 + 2));
  return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), _mm512_set1_epi8(static_cast<char>(0x80)));
}

// v[h]: lanes 0-7 add up to group 2 h's dot product, lanes 8-15 to group 2 h + 1's. Returns the 16
// sums, lane i holding group kChunkOrder[i] (quant_activations.h orders the token side to match).
A1_ZMM_FN __m512i reduce_groups(const __m512i* v) {
  __m512i u[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j)  // per 128-bit lane: [v0 0+2, v1 0+2, v0 1+3, v1 1+3]
    u[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * j], v[2 * j + 1]), _mm512_unpackhi_epi32(v[2 * j], v[2 * j + 1]));
  // per 128-bit lane: the lane's sum of v0, v1, v2, v3 (w0) and v4 .. v7 (w1)
  const __m512i w0 = _mm512_add_epi32(_mm512_unpacklo_epi64(u[0], u[1]), _mm512_unpackhi_epi64(u[0], u[1]));
  const __m512i w1 = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2], u[3]), _mm512_unpackhi_epi64(u[2], u[3]));
  // a group is two 128-bit lanes: (0, 1) for even groups, (2, 3) for odd ones
  return _mm512_add_epi32(_mm512_shuffle_i64x2(w0, w1, _MM_SHUFFLE(2, 0, 2, 0)),
                          _mm512_shuffle_i64x2(w0, w1, _MM_SHUFFLE(3, 1, 3, 1)));
}

// Q4 groups g .. g + 3 (blocks b[0..3]) as two vectors: lo holds each group's weights 0-15 (its
// low nibbles) in 128-bit lane j, hi its weights 16-31: no cross-lane shuffle, one insert per block.
template <Format F>
A1_ZMM_FN void unpack_quad(const uint8_t* const* b, __m512i* lo, __m512i* hi) {
  constexpr int qs = F == Format::kQ4_0 ? 2 : 4;
  __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0] + qs)));
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1] + qs)), 1);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[2] + qs)), 2);
  v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[3] + qs)), 3);
  *lo = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
  *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0F));
}

// v[q]: 128-bit lane j adds up to group 4 q + j's dot product. Returns the 16 sums, lane i holding
// group kQuadOrder[i] (6 shuffles where reduce_groups needs 14).
A1_ZMM_FN __m512i reduce_quads(const __m512i* v) {
  const __m512i u0 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
  const __m512i u1 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
  return _mm512_add_epi32(_mm512_unpacklo_epi64(u0, u1), _mm512_unpackhi_epi64(u0, u1));
}

// What every row of a call shares: the gather offsets of 16 groups' first bytes in the kernel's
// order (kQuadOrder for Q4_0 / Q4_1, kPairOrder for Q8_0), and the lanes present in the last chunk.
struct ChunkLayout {
  __m512i gather_offsets;
  __mmask16 last_mask;
  int64_t groups;
};

template <Format F>
constexpr bool kQuads = F == Format::kQ4_0 || F == Format::kQ4_1;

template <Format F>
A1_ZMM_FN ChunkLayout chunk_layout(int64_t in_features) {
  ChunkLayout layout;
  alignas(64) int32_t offsets[16];
  const int* order = kQuads<F> ? kQuadOrder : kPairOrder;
  const int64_t groups = in_features / kGroup, last = groups - 16 * ((groups - 1) / 16);
  layout.last_mask = 0;
  for (int i = 0; i < 16; ++i) {
    offsets[i] = order[i] * format_info(F).block_bytes;
    if (order[i] < last) layout.last_mask = static_cast<__mmask16>(layout.last_mask | (1u << i));
  }
  layout.gather_offsets = _mm512_load_si512(offsets);
  layout.groups = groups;
  return layout;
}

// Weight row n against TT token rows from token row t0 (xq: rounded rows laid out for this format,
// int8_rows_layout).
template <Format F, int TT>
A1_ZMM_FN void chunk_tile(const QuantGemmParams& p, const Q8Row* xq, const ChunkLayout& layout, int64_t n,
                          int64_t t0) {
  constexpr int64_t kBlock = format_info(F).block_bytes;
  constexpr bool kZeroPoint = F != Format::kQ4_1, kMin = F == Format::kQ4_1;
  const int64_t groups = layout.groups;
  const uint8_t* row = p.weight + n * p.row_bytes;
  __m512 acc[TT];
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t c = 0; 16 * c < groups; ++c) {
    const int64_t g0 = 16 * c;
    __m512i dots[TT][8];
    if constexpr (kQuads<F>) {  // 4 quads of groups: lo and hi halves against the token's quad bytes
    #pragma GCC unroll 4
      for (int h = 0; h < 4; ++h) {
        const int64_t g = g0 + 4 * h;
        if (g < groups) {  // groups past the end reread the quad's first block; the token's bytes there are 0
          const uint8_t* b[4];
        #pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) b[j] = row + (g + j < groups ? g + j : g) * kBlock;
          __m512i lo, hi;
          unpack_quad<F>(b, &lo, &hi);
        #pragma GCC unroll 8
          for (int t = 0; t < TT; ++t) {
            const int8_t* xs = xq[t0 + t].quad_q + 32 * g;
            const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_load_si512(xs));
            dots[t][h] = _mm512_dpbusd_epi32(dot, hi, _mm512_load_si512(xs + 64));
          }
        } else {
        #pragma GCC unroll 8
          for (int t = 0; t < TT; ++t) dots[t][h] = _mm512_setzero_si512();
        }
      }
    } else {  // Q8_0: 8 pairs of groups
    #pragma GCC unroll 8
      for (int h = 0; h < 8; ++h) {
        const int64_t g = g0 + 2 * h;
        if (g < groups) {  // an odd count's last group pairs with itself; the token's bytes there are 0
          const uint8_t* b0 = row + g * kBlock;
          const __m512i w = unpack_q8_pair(b0, g + 1 < groups ? b0 + kBlock : b0);
        #pragma GCC unroll 8
          for (int t = 0; t < TT; ++t)
            dots[t][h] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_load_si512(xq[t0 + t].q + kGroup * g));
        } else {
        #pragma GCC unroll 8
          for (int t = 0; t < TT; ++t) dots[t][h] = _mm512_setzero_si512();
        }
      }
    }
    const __mmask16 mask = g0 + 16 >= groups ? layout.last_mask : static_cast<__mmask16>(0xFFFF);
    // each lane's block starts with its float16 d (and Q4_1's m): both in one 32-bit gather
    const __m512i fields = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), mask, layout.gather_offsets,
                                                       row + g0 * kBlock, 1);
    const __m512 d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(fields));
  #pragma GCC unroll 8
    for (int t = 0; t < TT; ++t) {
      const Q8Row& x = xq[t0 + t];
      __m512i dot = kQuads<F> ? reduce_quads(dots[t]) : reduce_groups(dots[t]);
      if constexpr (kZeroPoint) dot = _mm512_add_epi32(dot, _mm512_load_si512(x.chunk_offset + g0));
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(d, _mm512_load_ps(x.chunk_d + g0)), acc[t]);
      if constexpr (kMin) {
        const __m512 m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(fields, 16)));
        acc[t] = _mm512_fmadd_ps(m, _mm512_load_ps(x.chunk_sum + g0), acc[t]);
      }
    }
  }
  const float bias = p.bias != nullptr ? p.bias[n] : 0.0f;
#pragma GCC unroll 8
  for (int t = 0; t < TT; ++t) p.out[(t0 + t) * p.out_features + n] = _mm512_reduce_add_ps(acc[t]) + bias;
}

// Rows ahead whose weights are prefetched.
constexpr int64_t kPrefetchRows = 8;

// Weight rows [n_begin, n_end) for every token row, in tiles of two token rows.
template <Format F>
A1_ZMM_FN void pair_rows(const QuantGemmParams& p, const Q8Row* xq, int64_t n_begin, int64_t n_end) {
  const ChunkLayout layout = chunk_layout<F>(p.in_features);
  for (int64_t n = n_begin; n < n_end; ++n) {
    if (n + kPrefetchRows < n_end)  // weights stream from memory at batch 1: ask for them early
      for (int64_t offset = 0; offset < p.row_bytes; offset += 64)
        _mm_prefetch(reinterpret_cast<const char*>(p.weight + (n + kPrefetchRows) * p.row_bytes + offset), _MM_HINT_T0);
    int64_t t = 0;
    for (; t + 2 <= p.tokens; t += 2) chunk_tile<F, 2>(p, xq, layout, n, t);
    if (t < p.tokens) chunk_tile<F, 1>(p, xq, layout, n, t);
  }
}

}  // namespace a1::quant
#undef A1_ZMM_FN
#endif  // A1_HAVE_ISA_DISPATCH
