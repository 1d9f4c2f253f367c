// Torch-free fp32 kernel of a1::linear for few tokens: out[T, N] = x[T, K] @ weight[N, K]^T + bias.
//
// Why not BLAS: a decode step multiplies a handful of token rows by every weight matrix, so the
// work is streaming the weights from memory once (batch 1: 538 MB per token for SmolLM2-135M). At
// one token MKL's sgemv does that too, but at 2-8 tokens its sgemm re-reads packed panels and falls
// to 10-13 GB/s here against ~23 GB/s (benchmarks/RESULTS.md §1); this kernel reads each weight row
// once per call, straight from its row-major [N, K] layout, and multiplies it into every token row
// while it sits in registers.
//
// Register tile: R weight rows x TT token rows of vector accumulators along K; each step loads R
// weight vectors and TT token vectors for R * TT FMAs. A thread owns a contiguous range of weight
// rows and walks it block by block, so each thread streams one contiguous region of memory; the
// token rows (T x K floats) stay in L1/L2 for the whole range, and the next block is prefetched
// while the current one is multiplied.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/simd_wide.h"

namespace a1::linear {

struct SkinnyGemmParams {
  const float* x;       // [T, K], rows x_stride apart, each row contiguous
  int64_t x_stride;
  const float* weight;  // [N, K], rows weight_stride apart, each row contiguous
  int64_t weight_stride;
  const float* bias;    // [N] or nullptr
  float* out;           // [T, N] contiguous
  int64_t tokens, out_features, in_features;  // T, N, K
};

// Dot products of R weight rows with TT token rows: out[t, n + r] for r < R, t < TT, starting at
// token row t0. The K tail beyond the last whole vector is summed in scalar.
template <class V, int R, int TT>
inline void gemm_tile(const SkinnyGemmParams& p, int64_t n, int64_t t0) {
  constexpr int W = simd::width_v<V>;
  const int64_t K = p.in_features;
  const float* w_rows[R];
  const float* x_rows[TT];
  for (int r = 0; r < R; ++r) w_rows[r] = p.weight + (n + r) * p.weight_stride;
  for (int t = 0; t < TT; ++t) x_rows[t] = p.x + (t0 + t) * p.x_stride;

  V acc[R * TT];
  for (int i = 0; i < R * TT; ++i) acc[i] = V{};
  int64_t k = 0;
  for (; k + W <= K; k += W) {
    V xv[TT];
    for (int t = 0; t < TT; ++t) xv[t] = simd::vload<V>(x_rows[t] + k);
    for (int r = 0; r < R; ++r) {
      // The same k of the next row block into L2: with token reuse the hardware prefetchers fall
      // behind (4 tokens: 33 -> 26 ms per SmolLM2 step). Prefetches never fault, so the one past
      // the last row is harmless.
      __builtin_prefetch(w_rows[r] + R * p.weight_stride + k, 0, 2);
      const V wv = simd::vload<V>(w_rows[r] + k);
      for (int t = 0; t < TT; ++t) acc[r * TT + t] += wv * xv[t];
    }
  }

  float sums[R * TT];
  simd::lane_sums<R * TT>(acc, sums);
  for (int r = 0; r < R; ++r) {
    const float bias = p.bias != nullptr ? p.bias[n + r] : 0.0f;
    for (int t = 0; t < TT; ++t) {
      float s = sums[r * TT + t];
      for (int64_t kk = k; kk < K; ++kk) s += w_rows[r][kk] * x_rows[t][kk];
      p.out[(t0 + t) * p.out_features + n + r] = s + bias;
    }
  }
}

// All token rows against weight rows [n, n + R): token tiles of TT, then the remainder one tile
// of 1..TT-1 rows.
template <class V, int R, int TT>
inline void gemm_row_block(const SkinnyGemmParams& p, int64_t n) {
  int64_t t = 0;
  for (; t + TT <= p.tokens; t += TT) gemm_tile<V, R, TT>(p, n, t);
  switch (p.tokens - t) {
    case 0: break;
    case 1: gemm_tile<V, R, 1>(p, n, t); break;
    case 2: if constexpr (TT > 2) gemm_tile<V, R, 2>(p, n, t); break;
    case 3: if constexpr (TT > 3) gemm_tile<V, R, 3>(p, n, t); break;
    default: for (; t < p.tokens; ++t) gemm_tile<V, R, 1>(p, n, t); break;
  }
}

// Weight rows [n_begin, n_end): blocks of R rows, the last few one row at a time. A single token
// row gets a taller block (RowsOne): it has no token reuse, so only the number of independent
// weight streams in flight matters.
template <class V, int R, int TT, int RowsOne>
inline void skinny_gemm_rows(const SkinnyGemmParams& p, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  if (p.tokens == 1) {
    for (; n + RowsOne <= n_end; n += RowsOne) gemm_tile<V, RowsOne, 1>(p, n, 0);
  } else {
    for (; n + R <= n_end; n += R) gemm_row_block<V, R, TT>(p, n);
  }
  for (; n < n_end; ++n) gemm_row_block<V, 1, TT>(p, n);
}

// Tiles per instruction set: AVX-512 has 32 vector registers (16 accumulators + 4 token vectors +
// a weight vector), AVX2 and SSE have 16 (8 + 4 + 1).
A1_TARGET_AVX512 inline void skinny_gemm_rows_avx512(const SkinnyGemmParams& p, int64_t n_begin, int64_t n_end) {
  skinny_gemm_rows<simd::f32x16, 4, 4, 8>(p, n_begin, n_end);
}
A1_TARGET_AVX2 inline void skinny_gemm_rows_avx2(const SkinnyGemmParams& p, int64_t n_begin, int64_t n_end) {
  skinny_gemm_rows<simd::f32x8, 2, 4, 8>(p, n_begin, n_end);
}
A1_TARGET_BASELINE inline void skinny_gemm_rows_baseline(const SkinnyGemmParams& p, int64_t n_begin,
                                                          int64_t n_end) {
  skinny_gemm_rows<simd::f32x4, 2, 4, 4>(p, n_begin, n_end);
}

using SkinnyGemmRowsFn = void (*)(const SkinnyGemmParams&, int64_t, int64_t);

inline SkinnyGemmRowsFn select_skinny_gemm_rows(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return skinny_gemm_rows_avx512;
    case simd::Isa::kAvx2: return skinny_gemm_rows_avx2;
    default: return skinny_gemm_rows_baseline;
  }
}

// Rows are handed to threads in multiples of this, so every thread but the last runs whole blocks.
constexpr int64_t kRowAlignment = 8;

}  // namespace a1::linear
