// The many-token path of a1::quant_linear (prefill, scoring, decode batches above kInt8MaxTokens) for
// Q4_0, Q4_1 and Q8_0 on CPUs with AVX-512 VNNI. A thread decodes 16 weight rows (a panel) once into
// the layout vpdpbusd multiplies with one broadcast token dword: per group, 8 vectors of 64 bytes,
// vector k holding weights 4 k .. 4 k + 3 of each of the 16 rows (the lanes are rows, so no
// horizontal sums), plus the rows' scales and mins as float vectors. Then every token row streams
// past the panel, which stays in L1: 8 dot products and ~4 scaling instructions per group and token,
// 512 multiply-adds, where the fp32 panels of quant_gemm_kernels.h need 32 FMAs for the same work.
// Weights stored as packed panels (quant_panel_layout.h, made at load) are already in that layout,
// nibbles aside: the same tile reads them in place for any number of token rows, batch 1 included.
#pragma once
#include <algorithm>
#include <cstdint>

#include "quant/quant_activations.h"
#include "quant/quant_gemv_kernels.h"
#include "quant/quant_panel_layout.h"
#include "quant/quant_panel_support.h"

#if A1_HAVE_ISA_DISPATCH
#include <immintrin.h>
#endif

namespace a1::quant {

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

// Group g of a panel decoded by decode_int8_panel: its 8 weight vectors, scales and mins.
struct DecodedGroups {
  Int8Panel panel;
  template <Format F>
  A1_PANEL_FN void load(int64_t g, __m512i* w, __m512* scale, __m512* min) const {
  #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_load_si512(panel.bytes + (g * 8 + k) * 64);
    *scale = _mm512_load_ps(panel.scale + g * kInt8PanelRows);
    *min = _mm512_load_ps(panel.min + g * kInt8PanelRows);
  }
};

// How far ahead in a packed panel stream the tile prefetches: into L2 far ahead, into L1 near.
// Measured on the 1.5B-shaped file's layer weights (batch 1, 2 threads, streamed from memory):
// 26.9 ms a pass with both against 29.9 with an L1 prefetch 8 KiB ahead alone and 39.7 with none;
// on SmolLM2, whose weights stay in the L3 cache, the same.
constexpr int64_t kPrefetchL2Bytes = 16384, kPrefetchL1Bytes = 2048;

// Group g of a panel stored packed (quant_panel_layout.h): unpacked in registers. A Q4 dword j
// of a row holds weights 4 j .. 4 j + 3 in its low nibbles and 16 + 4 j .. in its high ones, so the
// low nibbles are vector j and the high nibbles vector 4 + j of the decoded layout.
struct PackedGroups {
  const uint8_t* panel;  // the panel's first group
  template <Format F>
  A1_PANEL_FN void load(int64_t g, __m512i* w, __m512* scale, __m512* min) const {
    constexpr int64_t kUnit = kInt8PanelRows * format_info(F).block_bytes;
    const uint8_t* unit = panel + g * kUnit;
    const uint8_t* bytes = unit + panel_header_bytes(F);
    // A decode step streams the weights from memory: ask for them ahead, a group's worth of cache
    // lines per group (past the weight's end a prefetch is harmless).
  #pragma GCC unroll 16
    for (int64_t line = 0; line < kUnit; line += 64) {
      _mm_prefetch(reinterpret_cast<const char*>(unit + kPrefetchL2Bytes + line), _MM_HINT_T1);
      _mm_prefetch(reinterpret_cast<const char*>(unit + kPrefetchL1Bytes + line), _MM_HINT_T0);
    }
    *scale = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit)));
    *min = F == Format::kQ4_1 ? _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(unit + 32)))
                              : _mm512_setzero_ps();
    if constexpr (F == Format::kQ8_0) {
    #pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        w[k] = _mm512_xor_si512(_mm512_loadu_si512(bytes + 64 * k), _mm512_set1_epi8(static_cast<char>(0x80)));
    } else {
      const __m512i nibble = _mm512_set1_epi8(0x0F);
    #pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m512i v = _mm512_loadu_si512(bytes + 64 * j);
        w[j] = _mm512_and_si512(v, nibble);
        w[4 + j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), nibble);
      }
    }
  }
};

// acc + one group's 16 integer dot products (zero point already in them) of token row x, scaled:
// the one scaling step of every panel tile (VNNI and AMX), which is why they agree bit for bit.
template <Format F>
A1_PANEL_FN __m512 scale_group_dots(__m512i dot, __m512 scale, __m512 min, const Q8Row& x, int64_t g, __m512 acc) {
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(scale, _mm512_set1_ps(x.d[g])), acc);
  if constexpr (F == Format::kQ4_1) acc = _mm512_fmadd_ps(min, _mm512_set1_ps(x.sum[g]), acc);
  return acc;
}

// The panel's 16 outputs for TT token rows from t0 (out: the op's output, bias or nullptr).
template <Format F, int TT, class Groups>
A1_PANEL_FN void int8_panel_tile(const Groups& source, int64_t groups, const Q8Row* xq, int64_t t0, float* out,
                                 int64_t out_stride, int rows, const float* bias) {
  constexpr bool kZeroPoint = F != Format::kQ4_1;
  constexpr int kChains = TT >= 4 ? 1 : 4 / TT;
  __m512 acc[TT];
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512i w[8];
    __m512 scale, min;
    source.template load<F>(g, w, &scale, &min);
    // k outer, tokens inner: independent dot-product chains hide vpdpbusd's latency, TT of them,
    // or for fewer than 4 tokens 4 / TT per token (integer sums: the split changes no bit)
    __m512i dot[TT][kChains];
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
      dot[t][0] = kZeroPoint ? _mm512_set1_epi32(xq[t0 + t].zero_sum[g]) : _mm512_setzero_si512();
    #pragma GCC unroll 4
      for (int c = 1; c < kChains; ++c) dot[t][c] = _mm512_setzero_si512();
    }
  #pragma GCC unroll 8
    for (int k = 0; k < 8; ++k)
    #pragma GCC unroll 16
      for (int t = 0; t < TT; ++t) {
        const int32_t* words = reinterpret_cast<const int32_t*>(xq[t0 + t].q + g * kGroup);
        dot[t][k % kChains] = _mm512_dpbusd_epi32(dot[t][k % kChains], w[k], _mm512_set1_epi32(words[k]));
      }
  #pragma GCC unroll 16
    for (int t = 0; t < TT; ++t) {
    #pragma GCC unroll 4
      for (int c = 1; c < kChains; ++c) dot[t][0] = _mm512_add_epi32(dot[t][0], dot[t][c]);
      acc[t] = scale_group_dots<F>(dot[t][0], scale, min, xq[t0 + t], g, acc[t]);
    }
  }
  const __mmask16 mask = static_cast<__mmask16>((1u << rows) - 1);
  const __m512 bias_v = bias != nullptr ? _mm512_maskz_loadu_ps(mask, bias) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int t = 0; t < TT; ++t) _mm512_mask_storeu_ps(out + (t0 + t) * out_stride, mask, _mm512_add_ps(acc[t], bias_v));
}

// Token rows from t_begin against one panel of `rows` weight rows from n0, in tiles of 8, 4, 2 and 1
// tokens.
template <Format F, class Groups>
A1_PANEL_FN void int8_panel_tokens(const QuantGemmParams& p, const Groups& source, const Q8Row* xq, int64_t n0,
                                   int rows, int64_t t_begin = 0) {
  const int64_t groups = p.in_features / kGroup;
  float* out = p.out + n0;
  const float* bias = p.bias != nullptr ? p.bias + n0 : nullptr;
  int64_t t = t_begin;
  for (; t + 8 <= p.tokens; t += 8) int8_panel_tile<F, 8>(source, groups, xq, t, out, p.out_features, rows, bias);
  for (; t + 4 <= p.tokens; t += 4) int8_panel_tile<F, 4>(source, groups, xq, t, out, p.out_features, rows, bias);
  for (; t + 2 <= p.tokens; t += 2) int8_panel_tile<F, 2>(source, groups, xq, t, out, p.out_features, rows, bias);
  if (t < p.tokens) int8_panel_tile<F, 1>(source, groups, xq, t, out, p.out_features, rows, bias);
}

// Weight panels [panel_begin, panel_end) against every token row; `buffer` holds one decoded panel.
template <Format F>
A1_PANEL_FN void int8_panels(const QuantGemmParams& p, const Q8Row* xq, int64_t panel_begin, int64_t panel_end,
                             uint8_t* buffer) {
  const DecodedGroups source{int8_panel_at(buffer, p.in_features / kGroup)};
  for (int64_t u = panel_begin; u < panel_end; ++u) {
    const int64_t n0 = u * kInt8PanelRows;
    const int rows = static_cast<int>(std::min<int64_t>(kInt8PanelRows, p.out_features - n0));
    decode_int8_panel<F>(p, n0, rows, source.panel);
    int8_panel_tokens<F>(p, source, xq, n0, rows);
  }
}

// Panels [panel_begin, panel_end) of a weight stored packed (p.weight: its panels back to back,
// p.row_bytes: the bytes of one panel) against every token row: nothing to decode, so one token
// row pays only the weights' unpacking (nibbles: 3 instructions per 8 dot products).
template <Format F>
A1_PANEL_FN void packed_panels(const QuantGemmParams& p, const Q8Row* xq, int64_t panel_begin, int64_t panel_end) {
  for (int64_t u = panel_begin; u < panel_end; ++u) {
    int8_panel_tokens<F>(p, PackedGroups{p.weight + u * p.row_bytes}, xq, u * kInt8PanelRows, kInt8PanelRows);
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

A1_PANEL_FN __attribute__((flatten)) void packed_panels_vnni(const QuantGemmParams& p, const Q8Row* xq, int64_t b,
                                                             int64_t e, uint8_t*) {
  switch (p.format) {
    case Format::kQ4_0: return packed_panels<Format::kQ4_0>(p, xq, b, e);
    case Format::kQ4_1: return packed_panels<Format::kQ4_1>(p, xq, b, e);
    case Format::kQ8_0: return packed_panels<Format::kQ8_0>(p, xq, b, e);
    default: return;
  }
}

#undef A1_PANEL_FN
#endif  // A1_HAVE_ISA_DISPATCH

// The many-token integer kernel for this CPU and format, nullptr where there is none (no VNNI, a
// format other than Q4_0 / Q4_1 / Q8_0): the fp32 panels serve there.
inline Int8PanelsFn select_int8_panels(simd::Isa isa, Format format) {
#if A1_HAVE_ISA_DISPATCH
  if (int8_panels_supported(isa) && is_panel_format(format)) return int8_panels_vnni;
#endif
  (void)isa, (void)format;
  return nullptr;
}

// The zero point the panels take off (unsigned bytes: Q4_0's q, Q8_0's q + 128).
inline int int8_panel_zero_point(Format format) {
  return format == Format::kQ4_0 ? 8 : format == Format::kQ8_0 ? 128 : 0;
}

}  // namespace a1::quant
