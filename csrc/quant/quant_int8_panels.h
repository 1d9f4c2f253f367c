// The many-token path of a1::quant_linear (prefill, scoring, decode batches above kInt8MaxTokens) for
// Q4_0, Q4_1 and Q8_0 on CPUs with AVX-512 VNNI. A thread decodes 16 weight rows (a panel) once into
// the layout vpdpbusd multiplies with one broadcast token dword: per group, 8 vectors of 64 bytes,
// vector k holding weights 4 k .. 4 k + 3 of each of the 16 rows (the lanes are rows, so no
// horizontal sums), plus the rows' scales and mins as float vectors. Then every token row streams
// past the panel, which stays in L1: 8 dot products and ~4 scaling instructions per group and token,
// 512 multiply-adds, where the fp32 panels of quant_gemm_kernels.h need 32 FMAs for the same work.
#pragma once
#include <algorithm>
#include <cstdint>

#include "quant/quant_activations.h"
#include "quant/quant_gemv_kernels.h"

#if A1_HAVE_ISA_DISPATCH
#include <immintrin.h>
#endif

namespace a1::quant {

constexpr int kInt8PanelRows = 16;

// One decoded panel: bytes [groups][8][16 rows][4], scale and min [groups][16 rows] (64-byte aligned).
struct Int8Panel {
  uint8_t* bytes;
  float* scale;
  float* min;
};

inline int64_t int8_panel_bytes(int64_t groups) { return groups * (512 + 2 * 64); }

inline Int8Panel int8_panel_at(uint8_t* base, int64_t groups) {
  return {base, reinterpret_cast<float*>(base + groups * 512), reinterpret_cast<float*>(base + groups * 576)};
}

using Int8PanelsFn = void (*)(const QuantGemmParams&, const Q8Row*, int64_t, int64_t, uint8_t*);

#if A1_HAVE_ISA_DISPATCH
#define A1_PANEL_FN __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c"))) inline

// A group (one block of these formats) as 32 unsigned bytes in weight order (Q4: low nibbles are
// weights 0-15, high nibbles 16-31; Q8_0: q + 128), its scale and its min.
template <Format F>
A1_PANEL_FN __m256i unpack_block(const uint8_t* block, float* scale, float* min) {
  *scale = _cvtsh_ss(static_cast<unsigned short>(block[0] | (block[1] << 8)));
  *min = F == Format::kQ4_1 ? _cvtsh_ss(static_cast<unsigned short>(block[2] | (block[3] << 8))) : 0.0f;
  if constexpr (F == Format::kQ8_0) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  } else {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + (F == Format::kQ4_0 ? 2 : 4)));
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bytes, 4), bytes), _mm256_set1_epi8(0x0F));
  }
}

// Weight rows [n0, n0 + rows) (rows <= 16) into `panel`; rows past them are zeros.
template <Format F>
A1_PANEL_FN void decode_int8_panel(const QuantGemmParams& p, int64_t n0, int rows, const Int8Panel& panel) {
  constexpr int64_t kBlock = format_info(F).block_bytes;
  const int64_t groups = p.in_features / kGroup;
  const __m256i dword_index = _mm256_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112);  // k * 16 rows
  for (int r = 0; r < kInt8PanelRows; ++r) {
    const uint8_t* row = p.weight + (n0 + std::min(r, rows - 1)) * p.row_bytes;
    for (int64_t g = 0; g < groups; ++g) {
      float scale, min;
      __m256i w = unpack_block<F>(row + g * kBlock, &scale, &min);
      if (r >= rows) w = _mm256_setzero_si256(), scale = min = 0.0f;
      _mm256_i32scatter_epi32(panel.bytes + (g * 8 * kInt8PanelRows + r) * 4, dword_index, w, 4);
      panel.scale[g * kInt8PanelRows + r] = scale;
      panel.min[g * kInt8PanelRows + r] = min;
    }
  }
}

// The panel's 16 outputs for TT token rows from t0 (out: the op's output, bias or nullptr).
template <Format F, int TT>
A1_PANEL_FN void int8_panel_tile(const Int8Panel& panel, int64_t groups, const Q8Row* xq, int64_t t0, float* out,
                                 int64_t out_stride, int rows, const float* bias) {
  constexpr bool kZeroPoint = F != Format::kQ4_1, kMin = F == Format::kQ4_1;
  __m512 acc[TT];
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i w[8];
  #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(panel.bytes + (g * 8 + k) * 64);
    const __m512 scale = _mm512_load_ps(panel.scale + g * kInt8PanelRows);
    const __m512 min = _mm512_load_ps(panel.min + g * kInt8PanelRows);
    // k outer, tokens inner: TT independent dot-product chains hide vpdpbusd's latency
    __m512i dot[TT];
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) dot[t] = kZeroPoint ? _mm512_set1_epi32(xq[t0 + t].zero_sum[g]) : _mm512_setzero_si512();
  #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
    #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        const int32_t* words = reinterpret_cast<const int32_t*>(xq[t0 + t].q + g * kGroup);
        dot[t] = _mm512_dpbusd_epi32(dot[t], w[k], _mm512_set1_epi32(words[k]));
      }
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
      const Q8Row& x = xq[t0 + t];
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(scale, _mm512_set1_ps(x.d[g])), acc[t]);
      if constexpr (kMin) acc[t] = _mm512_fmadd_ps(min, _mm512_set1_ps(x.sum[g]), acc[t]);
    }
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1);
  const __m512 bias_v = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) _mm512_mask_storeu_ps(out + (t0 + t) * out_stride, mask, _mm512_add_ps(acc[t], bias_v));
}

// Weight panels [panel_begin, panel_end) against every token row; `buffer` holds one decoded panel.
template <Format F>
A1_PANEL_FN void int8_panels(const QuantGemmParams& p, const Q8Row* xq, int64_t panel_begin, int64_t panel_end,
                             uint8_t* buffer) {
  constexpr int TT = 8;
  const int64_t groups = p.in_features / kGroup;
  const Int8Panel panel = int8_panel_at(buffer, groups);
  for (int64_t u = panel_begin; u < panel_end; ++u) {
    const int64_t n0 = u * kInt8PanelRows;
    const int rows = static_cast<int>(std::min<int64_t>(kInt8PanelRows, p.out_features - n0));
    decode_int8_panel<F>(p, n0, rows, panel);
    float* out = p.out + n0;
    const float* bias = p.bias != nullptr ? p.bias + n0 : nullptr;
    int64_t t = 0;
    for (; t + TT <= p.tokens; t += TT) int8_panel_tile<F, TT>(panel, groups, xq, t, out, p.out_features, rows, bias);
    for (; t + 2 <= p.tokens; t += 2) int8_panel_tile<F, 2>(panel, groups, xq, t, out, p.out_features, rows, bias);
    if (t < p.tokens) int8_panel_tile<F, 1>(panel, groups, xq, t, out, p.out_features, rows, bias);
  }
}

A1_PANEL_FN __attribute__((flatten)) void int8_panels_vnni(const QuantGemmParams& p, const Q8Row* xq, int64_t b,
                                                           int64_t e, uint8_t* buffer) {
  switch (p.format) {
    case Format::kQ4_0: return int8_panels<Format::kQ4_0>(p, xq, b, e, buffer);
    case Format::kQ4_1: return int8_panels<Format::kQ4_1>(p, xq, b, e, buffer);
    case Format::kQ8_0: return int8_panels<Format::kQ8_0>(p, xq, b, e, buffer);
    default: return;
  }
}

#undef A1_PANEL_FN
#endif  // A1_HAVE_ISA_DISPATCH

// The many-token integer kernel for this CPU and format, nullptr where there is none (no VNNI, a
// format other than Q4_0 / Q4_1 / Q8_0): the fp32 panels serve there.
inline Int8PanelsFn select_int8_panels(simd::Isa isa, Format format) {
#if A1_HAVE_ISA_DISPATCH
  const bool supported = format == Format::kQ4_0 || format == Format::kQ4_1 || format == Format::kQ8_0;
  if (isa == simd::Isa::kAvx512 && supported && __builtin_cpu_supports("avx512vnni")) return int8_panels_vnni;
#endif
  (void)isa, (void)format;
  return nullptr;
}

// The zero point the panels take off (unsigned bytes: Q4_0's q, Q8_0's q + 128).
inline int int8_panel_zero_point(Format format) {
  return format == Format::kQ4_0 ? 8 : format == Format::kQ8_0 ? 128 : 0;
}

}  // namespace a1::quant
