// Torch-free kernel of a1::linear for 16-bit weights and few tokens: out[T, N] = x[T, K] @ weight[N, K]^T
// + bias with weight and bias bf16 (or fp16), x and out of that type or fp32 (the LM head's logits
// for scoring), the products summed in fp32.
//
// Why: a decode step streams every weight once, and in bf16 that is half the bytes of fp32; but
// torch's bf16 matmul at one token row ran slower than a1's fp32 kernel, so the bf16 model decoded
// at 0.86x the fp32 one (issue #22). This is the fp32 skinny kernel (skinny_gemm_kernels.h) reading
// 16-bit weights: R weight rows x TT token rows of fp32 accumulators, each thread streaming one
// contiguous range of rows, the next row block prefetched. The weights are widened in registers
// (common/simd_half.h): bf16 by a shift and a mask per 2W elements, fp16 by vcvtph2ps (SSE2: bit
// arithmetic). The token rows are widened to fp32 once per call (pack), in the order the weights
// widen in: for bf16, per chunk of 2W elements the W even ones, then the W odd ones; for fp16 in
// natural order. The K tail beyond the last whole chunk is summed in scalar, in natural order.
//
// Not vdpbf16ps (AVX512-BF16, 32 bf16 products summed into 16 fp32 lanes per instruction, no
// widening): tried on the benchmark machine (all SmolLM2 weights, one thread), level at 1 token row
// (20.6 vs 20.5 ms) and slower from 8 rows on (34 vs 29 ms at 8, 149 vs 116 ms at 32).
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/float_rows.h"
#include "common/float_type.h"
#include "common/simd_half.h"

namespace a1::linear {

enum class HalfMode { kBf16, kFp16 };

struct HalfGemmParams {
  const float* x;            // [T, K] token rows widened by the kernel's pack_fn, K apart
  const uint16_t* weight;    // [N, K], rows weight_stride apart, each row contiguous
  int64_t weight_stride;
  const uint16_t* bias;      // [N] or nullptr
  void* out;                 // [T, N] contiguous, of out_type
  int64_t tokens, out_features, in_features;  // T, N, K
  FloatType type;            // kBFloat16 or kFloat16: of weight and bias
  FloatType out_type;        // `type` or kFloat32
};

template <HalfMode M>
inline float half_to_float(uint16_t h) {
  return M == HalfMode::kFp16 ? fp16_to_float(h) : bf16_to_float(h);
}

// One chunk of 2W elements of R weight rows times TT token rows into the accumulators.
template <HalfMode M, class V, int R, int TT>
inline void half_chunk(const HalfGemmParams& p, const uint16_t* const* w_rows, int64_t t0, int64_t k, V* acc) {
  constexpr int W = simd::width_v<V>;
  V x0[TT], x1[TT];
  for (int t = 0; t < TT; ++t) {
    x0[t] = simd::vload<V>(p.x + (t0 + t) * p.in_features + k);
    x1[t] = simd::vload<V>(p.x + (t0 + t) * p.in_features + k + W);
  }
  for (int r = 0; r < R; ++r) {
    // As in the fp32 kernel: the same k of the next row block into L2 (never faults past the end).
    __builtin_prefetch(w_rows[r] + R * p.weight_stride + k, 0, 2);
    V w0, w1;
    if constexpr (M == HalfMode::kBf16) {
      simd::load_bf16_pairs(w_rows[r] + k, w0, w1);
    } else {
      w0 = simd::load_fp16<V>(w_rows[r] + k);
      w1 = simd::load_fp16<V>(w_rows[r] + k + W);
    }
    for (int t = 0; t < TT; ++t) {
      acc[r * TT + t] += w0 * x0[t];
      acc[r * TT + t] += w1 * x1[t];
    }
  }
}

// Dot products of R weight rows with TT token rows from token row t0: out[t, n + r].
template <HalfMode M, class V, int R, int TT>
inline void half_tile(const HalfGemmParams& p, int64_t n, int64_t t0) {
  constexpr int W = simd::width_v<V>, C = 2 * W;  // elements per chunk: two vectors
  const int64_t K = p.in_features, whole = K / C * C;
  const uint16_t* w_rows[R];
  for (int r = 0; r < R; ++r) w_rows[r] = p.weight + (n + r) * p.weight_stride;
  V acc[R * TT];
  for (int i = 0; i < R * TT; ++i) acc[i] = V{};
  for (int64_t k = 0; k < whole; k += C) half_chunk<M, V, R, TT>(p, w_rows, t0, k, acc);

  float sums[R * TT];
  simd::lane_sums<R * TT>(acc, sums);
  for (int r = 0; r < R; ++r) {
    const float bias = p.bias != nullptr ? half_to_float<M>(p.bias[n + r]) : 0.0f;
    for (int t = 0; t < TT; ++t) {
      float s = sums[r * TT + t];
      const float* x_row = p.x + (t0 + t) * K;
      for (int64_t kk = whole; kk < K; ++kk) s += half_to_float<M>(w_rows[r][kk]) * x_row[kk];
      s += bias;
      const int64_t at = (t0 + t) * p.out_features + n + r;
      if (p.out_type == FloatType::kFloat32)
        static_cast<float*>(p.out)[at] = s;
      else
        static_cast<uint16_t*>(p.out)[at] = M == HalfMode::kFp16 ? float_to_fp16(s) : float_to_bf16(s);
    }
  }
}

// All token rows against weight rows [n, n + R): token tiles of TT, then the remainder.
template <HalfMode M, class V, int R, int TT>
inline void half_row_block(const HalfGemmParams& p, int64_t n) {
  int64_t t = 0;
  for (; t + TT <= p.tokens; t += TT) half_tile<M, V, R, TT>(p, n, t);
  switch (p.tokens - t) {
    case 0: break;
    case 2: if constexpr (TT > 2) { half_tile<M, V, R, 2>(p, n, t); break; } [[fallthrough]];
    case 3: if constexpr (TT > 3) { half_tile<M, V, R, 3>(p, n, t); break; } [[fallthrough]];
    default: for (; t < p.tokens; ++t) half_tile<M, V, R, 1>(p, n, t); break;
  }
}

// Weight rows [n_begin, n_end): blocks of R rows, or of W rows for a single token row (no token
// reuse: only the number of weight streams in flight matters, and W sums reduce in one transpose).
template <HalfMode M, class V, int R, int TT>
inline void half_gemm_rows(const HalfGemmParams& p, int64_t n_begin, int64_t n_end) {
  constexpr int RowsOne = simd::width_v<V>;
  int64_t n = n_begin;
  if (p.tokens == 1) {
    for (; n + RowsOne <= n_end; n += RowsOne) half_tile<M, V, RowsOne, 1>(p, n, 0);
  } else {
    for (; n + R <= n_end; n += R) half_row_block<M, V, R, TT>(p, n);
  }
  for (; n < n_end; ++n) half_row_block<M, V, 1, TT>(p, n);
}

// x [T, K] of x_type (rows x_stride elements apart) widened into dst [T, K] in the order half_tile
// reads for weights of `type` (see the top): natural order, then for bf16 each whole chunk permuted.
template <class V>
inline void pack_half_rows(const void* x, FloatType x_type, int64_t x_stride, int64_t tokens, int64_t K,
                           FloatType type, float* dst) {
  constexpr int W = simd::width_v<V>;
  const int64_t whole = type == FloatType::kBFloat16 ? K / (2 * W) * (2 * W) : 0;
  for (int64_t t = 0; t < tokens; ++t) {
    const char* src = static_cast<const char*>(x) + t * x_stride * float_type_size(x_type);
    float* row = dst + t * K;
    widen_row(src, x_type, row, static_cast<int>(K), static_cast<int>(K));
    for (int64_t k = 0; k < whole; k += 2 * W) {
      float chunk[2 * W];
      std::copy(row + k, row + k + 2 * W, chunk);
      for (int i = 0; i < W; ++i) {
        row[k + i] = chunk[2 * i];
        row[k + W + i] = chunk[2 * i + 1];
      }
    }
  }
}

// Per instruction set, tiles within its registers: AVX-512 (32) 16 accumulators + 8 token vectors
// + 2 widened weights; AVX2 (16) 8 + 4 + 2; SSE2 (16) 4 + 4 + 2.
#define A1_HALF_GEMM_ENTRY(isa, target, V, R, TT)                                                          \
  target inline void half_gemm_rows_##isa(const HalfGemmParams& p, int64_t n_begin, int64_t n_end) {    \
    if (p.type == FloatType::kBFloat16) return half_gemm_rows<HalfMode::kBf16, V, R, TT>(p, n_begin, n_end); \
    half_gemm_rows<HalfMode::kFp16, V, R, TT>(p, n_begin, n_end);                                        \
  }                                                                                                      \
  target inline void pack_half_rows_##isa(const void* x, FloatType x_type, int64_t x_stride, int64_t tokens, \
                                          int64_t k, FloatType type, float* dst) {                       \
    pack_half_rows<V>(x, x_type, x_stride, tokens, k, type, dst);                                        \
  }

A1_HALF_GEMM_ENTRY(avx512, A1_TARGET_AVX512, simd::f32x16, 4, 4)
A1_HALF_GEMM_ENTRY(avx2, A1_TARGET_AVX2, simd::f32x8, 4, 2)
A1_HALF_GEMM_ENTRY(baseline, A1_TARGET_BASELINE, simd::f32x4, 2, 2)
#undef A1_HALF_GEMM_ENTRY

struct HalfGemmKernel {
  void (*pack_fn)(const void* x, FloatType x_type, int64_t x_stride, int64_t tokens, int64_t in_features,
                  FloatType type, float* dst);
  void (*rows_fn)(const HalfGemmParams& p, int64_t n_begin, int64_t n_end);
};

inline HalfGemmKernel select_half_gemm(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return {pack_half_rows_avx512, half_gemm_rows_avx512};
    case simd::Isa::kAvx2: return {pack_half_rows_avx2, half_gemm_rows_avx2};
    default: return {pack_half_rows_baseline, half_gemm_rows_baseline};
  }
}

// Rows are handed to threads in multiples of this (the AVX-512 single-token block).
constexpr int64_t kHalfRowAlignment = 16;

}  // namespace a1::linear
