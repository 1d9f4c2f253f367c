// Register-blocked inner loops of the CPU paged attention, over a vector type V (simd_wide.h).
// Torch-free; instantiated by paged_attention_kernels.h once per ISA.
//
// Shapes: a tile holds `rows` query rows (the query heads of one GQA group at consecutive
// positions, already scaled) as fp32 [rows, dim]; a chunk of keys is given as row pointers
// (K and V rows of `dim` fp32, dim a multiple of W). Scores/probabilities live in [rows, N].
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>

#include "common/simd_wide.h"

namespace a1::attention {

// Rows per register block in both products (the query heads of a Llama GQA group fit one block).
constexpr int kRowBlock = 4;

// Keys per Q.K^T register block for R rows: R * keys accumulators reduce in one transpose_sum,
// capped so accumulators + key vectors stay in registers (16 on AVX2, 32 on AVX-512).
template <class V, int R>
constexpr int qk_keys_per_block() {
  constexpr int W = simd::width_v<V>;
  constexpr int rows_pow2 = R == 1 ? 1 : (R == 2 ? 2 : 4);
  return std::min(W / rows_pow2, W == 16 ? 8 : 4);
}

// Output vectors per P.V register block: R x C accumulators plus C value vectors.
template <class V>
constexpr int pv_vectors_per_block() {
  return simd::width_v<V> == 16 ? 4 : 2;
}

// s[r * s_stride + j] = dot(q[r], keys[j]) for r < R, j < KC. Dot products run along dim with
// one accumulator per (row, key); their horizontal sums come out of one transpose_sum.
template <class V, int R>
inline void qk_block(const float* q, int64_t q_stride, const float* const* keys, int dim, float* s,
                     int64_t s_stride) {
  constexpr int W = simd::width_v<V>;
  constexpr int KC = qk_keys_per_block<V, R>();
  static_assert(R * KC <= W, "accumulators must fit one transpose_sum");
  V acc[W] = {};
  for (int d = 0; d < dim; d += W) {
    V k[KC];
#pragma GCC unroll 8
    for (int j = 0; j < KC; ++j) k[j] = simd::vload<V>(keys[j] + d);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const V qv = simd::vload<V>(q + r * q_stride + d);
#pragma GCC unroll 8
      for (int j = 0; j < KC; ++j) acc[r * KC + j] += qv * k[j];
    }
  }
  const V sums = simd::transpose_sum(acc);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int j = 0; j < KC; ++j) s[r * s_stride + j] = sums[r * KC + j];
}

// Scores of R rows against keys [0, n) (keys padded with valid pointers up to a multiple of KC).
template <class V, int R>
inline void qk_rows(const float* q, int64_t q_stride, const float* const* keys, int n, int dim, float* s,
                    int64_t s_stride) {
  constexpr int KC = qk_keys_per_block<V, R>();
  for (int j = 0; j < n; j += KC) qk_block<V, R>(q, q_stride, keys + j, dim, s + j, s_stride);
}

// o[r, d0 : d0 + C*W] = o[r, ...] * rescale[r] + sum_{k < n} p[r, k] * values[k][d0 : ...].
template <class V, int R, int C>
inline void pv_block(float* o, int64_t o_stride, const float* rescale, const float* p, int64_t p_stride,
                     const float* const* values, int n, int d0) {
  constexpr int W = simd::width_v<V>;
  V acc[R][C];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) acc[r][c] = simd::vload<V>(o + r * o_stride + d0 + c * W) * simd::vbroadcast<V>(rescale[r]);
  for (int k = 0; k < n; ++k) {
    V v[C];
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) v[c] = simd::vload<V>(values[k] + d0 + c * W);
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const V pk = simd::vbroadcast_load<V>(p + r * p_stride + k);
#pragma GCC unroll 4
      for (int c = 0; c < C; ++c) acc[r][c] += pk * v[c];
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) simd::vstore(o + r * o_stride + d0 + c * W, acc[r][c]);
}

// All `dim` columns of R rows: blocks of C vectors, then single vectors.
template <class V, int R>
inline void pv_rows(float* o, int64_t o_stride, const float* rescale, const float* p, int64_t p_stride,
                    const float* const* values, int n, int dim) {
  constexpr int W = simd::width_v<V>;
  constexpr int C = pv_vectors_per_block<V>();
  int d0 = 0;
  for (; d0 + C * W <= dim; d0 += C * W) pv_block<V, R, C>(o, o_stride, rescale, p, p_stride, values, n, d0);
  for (; d0 < dim; d0 += W) pv_block<V, R, 1>(o, o_stride, rescale, p, p_stride, values, n, d0);
}

// Online-softmax step of one row over a chunk: the first `valid` of the row's scores are visible
// (the causal mask hides the rest). Updates the running max and sum, overwrites the scores with
// exp(score - max) (0 where hidden, up to `n` rounded up to W) and returns the factor by which the
// row's output accumulated so far must be rescaled.
template <class V>
inline float online_softmax_row(float* scores, int n, int valid, float& running_max, float& running_sum) {
  constexpr int W = simd::width_v<V>;
  const V lanes = simd::lane_index<V>();
  const V neg_inf = simd::vbroadcast<V>(-std::numeric_limits<float>::infinity());
  const V limit = simd::vbroadcast<V>(static_cast<float>(valid));
  V row_max = neg_inf;
  for (int j = 0; j < valid; j += W) {
    const auto visible = lanes + simd::vbroadcast<V>(static_cast<float>(j)) < limit;
    row_max = simd::vmax(row_max, visible ? simd::vload<V>(scores + j) : neg_inf);
  }
  const float new_max = std::max(running_max, simd::vhmax(row_max));
  const float rescale = simd::exp_nonpositive(running_max - new_max);  // 0 while running_max = -inf
  const V shift = simd::vbroadcast<V>(new_max);
  V vsum = V{};
  for (int j = 0; j < n; j += W) {
    const V e = simd::vexp_nonpositive(simd::vload<V>(scores + j) - shift);
    const V p = lanes + simd::vbroadcast<V>(static_cast<float>(j)) < limit ? e : V{};
    vsum += p;
    simd::vstore(scores + j, p);
  }
  running_sum = running_sum * rescale + simd::vhsum(vsum);
  running_max = new_max;
  return rescale;
}

}  // namespace a1::attention
