// Torch-free CPU kernels of the quantized ops that read blocks row by row: the exact dequantization
// of selected rows (a1::dequantize, the embedding lookup) and the decode path of a1::quant_linear,
// out[T, N] = x[T, K] @ W^T + bias for a few token rows with W in GGUF blocks.
//
// Decode path: a thread owns a contiguous range of weight rows and streams their blocks once per
// token tile; each 32-weight group of R rows is decoded in registers (quant_groups.h) and multiplied
// straight into TT token rows, dot products along K summed horizontally at the end (the fp32
// skinny kernel's tile, with the weight loads replaced by decoding). A row of SmolLM2's 576 inputs
// is 360 bytes in Q4_1, so a block of R rows is one short contiguous run; the hardware prefetchers
// keep up without help. With T = 1 there is no token reuse: a taller block (RowsOne) keeps more
// independent weight streams in flight.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/simd_wide.h"
#include "quant/quant_groups.h"

namespace a1::quant {

struct QuantGemmParams {
  const float* x;          // [T, K], rows x_stride apart, each row contiguous
  int64_t x_stride;
  const uint8_t* weight;   // [N, K / block_size, block_bytes], rows row_bytes apart
  int64_t row_bytes;
  const float* bias;       // [N] or nullptr
  float* out;              // [T, N] contiguous
  int64_t tokens, out_features, in_features;  // T, N, K
  Format format;
};

// Dot products of R weight rows with TT token rows from token row t0: out[t, n + r].
template <Format F, class V, int R, int TT>
inline void quant_tile(const QuantGemmParams& p, int64_t n, int64_t t0) {
  constexpr int NV = kGroup / simd::width_v<V>;
  const int64_t groups = p.in_features / kGroup;
  const uint8_t* rows[R];
  const float* x_rows[TT];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) rows[r] = p.weight + (n + r) * p.row_bytes;
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) x_rows[t] = p.x + (t0 + t) * p.x_stride;
  V acc[R][TT];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) acc[r][t] = V{};
  for (int64_t g = 0; g < groups; ++g) {
    V xv[TT][NV];
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t)
    #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) xv[t][v] = simd::vload<V>(x_rows[t] + g * kGroup + v * simd::width_v<V>);
  #pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      V w[NV];
      decode_row_group<F, V, false>(rows[r], g, w);
    #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t)
      #pragma GCC unroll 16
        for (int v = 0; v < NV; ++v) acc[r][t] += w[v] * xv[t][v];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    const float bias = p.bias != nullptr ? p.bias[n + r] : 0.0f;
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) p.out[(t0 + t) * p.out_features + n + r] = simd::vhsum(acc[r][t]) + bias;
  }
}

// All token rows against weight rows [n, n + R): tiles of TT token rows, then the remainder.
template <Format F, class V, int R, int TT>
inline void quant_row_block(const QuantGemmParams& p, int64_t n) {
  int64_t t = 0;
  for (; t + TT <= p.tokens; t += TT) quant_tile<F, V, R, TT>(p, n, t);
  switch (p.tokens - t) {
    case 0: break;
    case 1: quant_tile<F, V, R, 1>(p, n, t); break;
    case 2: if constexpr (TT > 2) quant_tile<F, V, R, 2>(p, n, t); break;
    case 3: if constexpr (TT > 3) quant_tile<F, V, R, 3>(p, n, t); break;
    default: for (; t < p.tokens; ++t) quant_tile<F, V, R, 1>(p, n, t); break;
  }
}

// Weight rows [n_begin, n_end) for every token row: blocks of R rows (RowsOne for a single token),
// the last few one row at a time.
template <Format F, class V, int R, int TT, int RowsOne>
inline void quant_gemv_rows(const QuantGemmParams& p, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  if (p.tokens == 1) {
    for (; n + RowsOne <= n_end; n += RowsOne) quant_tile<F, V, RowsOne, 1>(p, n, 0);
  } else {
    for (; n + R <= n_end; n += R) quant_row_block<F, V, R, TT>(p, n);
  }
  for (; n < n_end; ++n) quant_row_block<F, V, 1, TT>(p, n);
}

// Rows `rows[0, count)` of a weight (all rows when rows is nullptr), each dequantized exactly into
// out + i * out_stride (K floats).
template <Format F, class V>
inline void dequantize_rows(const uint8_t* weight, int64_t row_bytes, int64_t in_features, const int64_t* rows,
                            int64_t begin, int64_t end, float* out, int64_t out_stride) {
  constexpr int W = simd::width_v<V>, NV = kGroup / W;
  for (int64_t i = begin; i < end; ++i) {
    const uint8_t* row = weight + (rows != nullptr ? rows[i] : i) * row_bytes;
    float* dst = out + i * out_stride;
    for (int64_t g = 0; g < in_features / kGroup; ++g) {
      V w[NV];
      decode_row_group<F, V, true>(row, g, w);
    #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) simd::vstore(dst + g * kGroup + v * W, w[v]);
    }
  }
}

// Per instruction set: register tiles as the fp32 skinny kernel's (AVX-512: 32 registers hold 16
// accumulators, 8 token vectors and a decoded group; AVX2 and SSE: 16).
#define A1_QUANT_GEMV_ENTRY(isa, target, V, R, TT, ROWS_ONE)                                                  \
  target inline void quant_gemv_rows_##isa(const QuantGemmParams& p, int64_t n_begin, int64_t n_end) {     \
    switch (p.format) {                                                                                     \
      case Format::kQ4_0: return quant_gemv_rows<Format::kQ4_0, V, R, TT, ROWS_ONE>(p, n_begin, n_end);   \
      case Format::kQ4_1: return quant_gemv_rows<Format::kQ4_1, V, R, TT, ROWS_ONE>(p, n_begin, n_end);   \
      case Format::kQ8_0: return quant_gemv_rows<Format::kQ8_0, V, R, TT, ROWS_ONE>(p, n_begin, n_end);   \
      case Format::kQ4_K: return quant_gemv_rows<Format::kQ4_K, V, R, TT, ROWS_ONE>(p, n_begin, n_end);   \
      case Format::kQ5_K: return quant_gemv_rows<Format::kQ5_K, V, R, TT, ROWS_ONE>(p, n_begin, n_end);   \
      case Format::kQ6_K: return quant_gemv_rows<Format::kQ6_K, V, R, TT, ROWS_ONE>(p, n_begin, n_end);   \
    }                                                                                                       \
  }                                                                                                         \
  target inline void dequantize_rows_##isa(Format f, const uint8_t* weight, int64_t row_bytes, int64_t k,  \
                                           const int64_t* rows, int64_t begin, int64_t end, float* out,     \
                                           int64_t out_stride) {                                            \
    switch (f) {                                                                                            \
      case Format::kQ4_0: return dequantize_rows<Format::kQ4_0, V>(weight, row_bytes, k, rows, begin, end, out, out_stride); \
      case Format::kQ4_1: return dequantize_rows<Format::kQ4_1, V>(weight, row_bytes, k, rows, begin, end, out, out_stride); \
      case Format::kQ8_0: return dequantize_rows<Format::kQ8_0, V>(weight, row_bytes, k, rows, begin, end, out, out_stride); \
      case Format::kQ4_K: return dequantize_rows<Format::kQ4_K, V>(weight, row_bytes, k, rows, begin, end, out, out_stride); \
      case Format::kQ5_K: return dequantize_rows<Format::kQ5_K, V>(weight, row_bytes, k, rows, begin, end, out, out_stride); \
      case Format::kQ6_K: return dequantize_rows<Format::kQ6_K, V>(weight, row_bytes, k, rows, begin, end, out, out_stride); \
    }                                                                                                       \
  }

A1_QUANT_GEMV_ENTRY(avx512, A1_TARGET_AVX512, simd::f32x16, 4, 4, 8)
A1_QUANT_GEMV_ENTRY(avx2, A1_TARGET_AVX2, simd::f32x8, 2, 2, 4)
A1_QUANT_GEMV_ENTRY(baseline, A1_TARGET_BASELINE, simd::f32x4, 2, 2, 2)
#undef A1_QUANT_GEMV_ENTRY

using QuantGemvRowsFn = void (*)(const QuantGemmParams&, int64_t, int64_t);
using DequantizeRowsFn = void (*)(Format, const uint8_t*, int64_t, int64_t, const int64_t*, int64_t, int64_t, float*,
                                  int64_t);

inline QuantGemvRowsFn select_quant_gemv_rows(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return quant_gemv_rows_avx512;
    case simd::Isa::kAvx2: return quant_gemv_rows_avx2;
    default: return quant_gemv_rows_baseline;
  }
}

inline DequantizeRowsFn select_dequantize_rows(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return dequantize_rows_avx512;
    case simd::Isa::kAvx2: return dequantize_rows_avx2;
    default: return dequantize_rows_baseline;
  }
}

// Rows are handed to threads in multiples of this, so every thread but the last runs whole blocks.
constexpr int64_t kQuantRowAlignment = 16;

}  // namespace a1::quant
