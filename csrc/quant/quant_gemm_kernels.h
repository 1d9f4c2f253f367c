// Torch-free GEMM path of a1::quant_linear (prefill, scoring: many token rows): a thread decodes
// the blocks of a few weight panels (16 rows each) into fp32 panels [16-row panel, K, 16] in a
// buffer of its own, then runs the fp32 packed kernel (linear/packed_gemm_kernels.h) on them for
// every token row. The decoding costs ~2 operations per weight, paid once per panel for all T
// token rows; the packed kernel does ~T / 8 FMAs per weight at AVX-512 width, so from a few dozen
// rows on the matmul runs at the fp32 kernel's speed with the weights read from 4-8 bits.
#pragma once
#include <algorithm>
#include <cstdint>

#include "linear/packed_gemm_kernels.h"
#include "quant/quant_gemv_kernels.h"

namespace a1::quant {

// Panels decoded per unit of work: the AVX-512 packed kernel's group (linear::kPanelAlignment).
constexpr int64_t kPanelsPerUnit = linear::kPanelAlignment;
// Token rows per pass of the packed kernel over a unit's panels (their rows stay in L2).
constexpr int64_t kGemmTokenChunk = 64;

// dst[k * dst_stride + i] = src[i * src_stride + k] for an 8 x 8 block (register transpose).
inline void transpose8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  using simd::f32x8;
  f32x8 r[8], lo[4], hi[4], q[8];
#pragma GCC unroll 16
  for (int t = 0; t < 8; ++t) r[t] = simd::vload<f32x8>(src + t * src_stride);
#pragma GCC unroll 16
  for (int i = 0; i < 4; ++i) {
    lo[i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    hi[i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
#pragma GCC unroll 16
  for (int i = 0; i < 2; ++i) {
    q[4 * i + 0] = __builtin_shufflevector(lo[2 * i], lo[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13);
    q[4 * i + 1] = __builtin_shufflevector(lo[2 * i], lo[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
    q[4 * i + 2] = __builtin_shufflevector(hi[2 * i], hi[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13);
    q[4 * i + 3] = __builtin_shufflevector(hi[2 * i], hi[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
  }
#pragma GCC unroll 16
  for (int c = 0; c < 4; ++c) {
    simd::vstore(dst + c * dst_stride, __builtin_shufflevector(q[c], q[4 + c], 0, 1, 2, 3, 8, 9, 10, 11));
    simd::vstore(dst + (c + 4) * dst_stride, __builtin_shufflevector(q[c], q[4 + c], 4, 5, 6, 7, 12, 13, 14, 15));
  }
}

// Weight rows [16 panel, 16 panel + 16) as an fp32 panel [K, 16] at dst.
template <Format F, class V>
inline void decode_panel(const QuantGemmParams& p, int64_t panel, float* dst) {
  constexpr int W = simd::width_v<V>, NV = kGroup / W;
  constexpr int64_t P = linear::kPanelWidth;
  alignas(64) float rows[P * kGroup];  // 16 rows x one group, row-major
  const uint8_t* first = p.weight + panel * P * p.row_bytes;
  for (int64_t g = 0; g < p.in_features / kGroup; ++g) {
    for (int64_t i = 0; i < P; ++i) {
      V w[NV];
      decode_row_group<F, V, false>(first + i * p.row_bytes, g, w);
    #pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) simd::vstore(rows + i * kGroup + v * W, w[v]);
    }
    float* out = dst + g * kGroup * P;
  #pragma GCC unroll 16
    for (int ib = 0; ib < P / 8; ++ib)
    #pragma GCC unroll 16
      for (int kb = 0; kb < kGroup / 8; ++kb) transpose8x8(rows + ib * 8 * kGroup + kb * 8, kGroup, out + kb * 8 * P + ib * 8, P);
  }
}

// Panels [panel_begin, panel_end) (at most kPanelsPerUnit) for every token row: decoded into
// `buffer` (kPanelsPerUnit * K * 16 floats), then multiplied into out by the packed kernel; x_tiles
// holds the token rows packed per chunk of kGemmTokenChunk (chunk c at c * kGemmTokenChunk * K).
template <Format F, class V, int NP, int TT>
inline void quant_gemm_unit(const QuantGemmParams& p, const float* x_tiles, int64_t panel_begin, int64_t panel_end,
                            float* buffer) {
  const int64_t K = p.in_features, P = linear::kPanelWidth;
  for (int64_t j = panel_begin; j < panel_end; ++j) decode_panel<F, V>(p, j, buffer + (j - panel_begin) * K * P);
  for (int64_t t0 = 0; t0 < p.tokens; t0 += kGemmTokenChunk) {
    const linear::PackedGemmParams params{x_tiles + t0 * K,
                                          buffer,
                                          p.bias != nullptr ? p.bias + panel_begin * P : nullptr,
                                          p.out + t0 * p.out_features + panel_begin * P,
                                          std::min(kGemmTokenChunk, p.tokens - t0),
                                          p.out_features,
                                          K};
    linear::packed_gemm_panels<V, NP, TT>(params, 0, panel_end - panel_begin);
  }
}

// The per-ISA entries use the packed kernel's tiles (linear/packed_gemm_kernels.h), so x_tiles must
// be packed by linear::select_packed_gemm(isa).pack_fn.
#define A1_QUANT_GEMM_ENTRY(isa, target, V, NP, TT)                                                            \
  target inline void quant_gemm_unit_##isa(const QuantGemmParams& p, const float* x_tiles, int64_t begin,      \
                                           int64_t end, float* buffer) {                                       \
    switch (p.format) {                                                                                        \
      case Format::kQ4_0: return quant_gemm_unit<Format::kQ4_0, V, NP, TT>(p, x_tiles, begin, end, buffer);   \
      case Format::kQ4_1: return quant_gemm_unit<Format::kQ4_1, V, NP, TT>(p, x_tiles, begin, end, buffer);   \
      case Format::kQ8_0: return quant_gemm_unit<Format::kQ8_0, V, NP, TT>(p, x_tiles, begin, end, buffer);   \
      case Format::kQ4_K: return quant_gemm_unit<Format::kQ4_K, V, NP, TT>(p, x_tiles, begin, end, buffer);   \
      case Format::kQ5_K: return quant_gemm_unit<Format::kQ5_K, V, NP, TT>(p, x_tiles, begin, end, buffer);   \
      case Format::kQ6_K: return quant_gemm_unit<Format::kQ6_K, V, NP, TT>(p, x_tiles, begin, end, buffer);   \
    }                                                                                                          \
  }

A1_QUANT_GEMM_ENTRY(avx512, A1_TARGET_AVX512, simd::f32x16, 3, linear::kTokenTileAvx512)
A1_QUANT_GEMM_ENTRY(avx2, A1_TARGET_AVX2, simd::f32x8, 1, linear::kTokenTileAvx2)
A1_QUANT_GEMM_ENTRY(baseline, A1_TARGET_BASELINE, simd::f32x4, 1, linear::kTokenTileBaseline)
#undef A1_QUANT_GEMM_ENTRY

using QuantGemmUnitFn = void (*)(const QuantGemmParams&, const float*, int64_t, int64_t, float*);

inline QuantGemmUnitFn select_quant_gemm_unit(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return quant_gemm_unit_avx512;
    case simd::Isa::kAvx2: return quant_gemm_unit_avx2;
    default: return quant_gemm_unit_baseline;
  }
}

}  // namespace a1::quant
