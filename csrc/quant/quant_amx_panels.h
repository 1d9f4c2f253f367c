// AMX for packed panels (quant_panel_layout.h) with many token rows (prefill, scoring): where the
// CPU has AMX-INT8 and Linux grants the tile state, each panel is unpacked once into the decoded
// panel of quant_int8_panels.h, whose 8 weight vectors per group ([k / 4][16 rows][4 bytes],
// unsigned) are AMX's B layout as they are; then 16 token rows x one group is one tdpbsud (A: the
// tokens' 32 rounded bytes, signed; C: 16 x 16 int32 dot products). Each group has its own scales,
// so C is stored after every group and scaled as the VNNI tile scales its dot products (the same
// integers and float operations: bit-identical to quant_int8_panels.h). Token rows past the last
// 16 run the VNNI tile on the same decoded panel. What is left per token and group is the scaling
// (~5 instructions where the VNNI tile also spends 8 vpdpbusd): a prefill 1.09-1.17x the VNNI
// tile's (benchmarks/RESULTS.md §14).
#pragma once
#include <cstdint>
#include <cstdlib>

#include "quant/quant_int8_panels.h"

#if A1_HAVE_ISA_DISPATCH && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__linux__)
#define A1_HAVE_AMX 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#else
#define A1_HAVE_AMX 0
#endif

namespace a1::quant {

// Token rows one tile multiplies.
constexpr int64_t kAmxTokens = 16;

// Whether AMX-INT8 runs here: the CPU has it, A1_CPU_ISA caps nothing (any cap turns AMX off, so
// A1_CPU_ISA=avx512 runs the VNNI tile alone), and Linux grants this process the tile data state
// (asked once: without the grant the first tile instruction faults).
inline bool amx_int8_ready() {
#if A1_HAVE_AMX
  static const bool ready = [] {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return ready && std::getenv("A1_CPU_ISA") == nullptr;
#else
  return false;
#endif
}

#if A1_HAVE_AMX
#define A1_AMX_FN \
  __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512vnni,avx2,fma,f16c,amx-tile,amx-int8"))) inline

struct alignas(64) AmxTileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// tmm0, tmm3: C [16 tokens][16 rows] int32 (even and odd groups, so that one group's product
// overlaps the previous one's store); tmm1: A [16 tokens][32 bytes]; tmm2: B [8][16 rows x 4 bytes].
A1_AMX_FN void load_amx_config() {
  AmxTileConfig config{};
  config.palette = 1;
  config.rows[0] = config.rows[3] = kAmxTokens, config.colsb[0] = config.colsb[3] = 64;
  config.rows[1] = kAmxTokens, config.colsb[1] = kGroup;
  config.rows[2] = kGroup / 4, config.colsb[2] = 64;
  _tile_loadconfig(&config);
}

// Group g's C tile (tmm0 or tmm3, by parity) scaled into the 16 tokens' accumulators.
template <Format F>
A1_AMX_FN void amx_scale(const int32_t* dots, const Int8Panel& panel, int64_t g, const Q8Row* xq, int64_t t0,
                         __m512* acc) {
  const __m512 scale = _mm512_load_ps(panel.scale + g * kInt8PanelRows);
  const __m512 min = _mm512_load_ps(panel.min + g * kInt8PanelRows);
#pragma GCC unroll 16
  for (int t = 0; t < kAmxTokens; ++t) {
    __m512i dot = _mm512_load_si512(dots + t * kInt8PanelRows);
    if constexpr (F != Format::kQ4_1) dot = _mm512_add_epi32(_mm512_set1_epi32(xq[t0 + t].zero_sum[g]), dot);
    acc[t] = scale_group_dots<F>(dot, scale, min, xq[t0 + t], g, acc[t]);
  }
}

// One decoded panel (16 weight rows from n0) against token rows t0 .. t0 + 15 (rounded rows
// x_stride bytes apart).
template <Format F>
A1_AMX_FN void amx_panel_tile(const QuantGemmParams& p, const Int8Panel& panel, const Q8Row* xq, int64_t x_stride,
                              int64_t n0, int64_t t0) {
  alignas(64) int32_t dots[2][kAmxTokens * kInt8PanelRows];
  const int64_t groups = p.in_features / kGroup;
  __m512 acc[kAmxTokens];
#pragma GCC unroll 16
  for (int t = 0; t < kAmxTokens; ++t) acc[t] = _mm512_setzero_ps();
  int64_t g = 0;
  for (; g + 2 <= groups; g += 2) {
    _tile_loadd(2, panel.bytes + g * 512, 64);
    _tile_loadd(1, xq[t0].q + g * kGroup, x_stride);
    _tile_zero(0);
    _tile_dpbsud(0, 1, 2);
    _tile_loadd(2, panel.bytes + (g + 1) * 512, 64);
    _tile_loadd(1, xq[t0].q + (g + 1) * kGroup, x_stride);
    _tile_zero(3);
    _tile_dpbsud(3, 1, 2);
    _tile_stored(0, dots[0], 64);
    _tile_stored(3, dots[1], 64);
    amx_scale<F>(dots[0], panel, g, xq, t0, acc);
    amx_scale<F>(dots[1], panel, g + 1, xq, t0, acc);
  }
  if (g < groups) {
    _tile_loadd(2, panel.bytes + g * 512, 64);
    _tile_loadd(1, xq[t0].q + g * kGroup, x_stride);
    _tile_zero(0);
    _tile_dpbsud(0, 1, 2);
    _tile_stored(0, dots[0], 64);
    amx_scale<F>(dots[0], panel, g, xq, t0, acc);
  }
  const __m512 bias = p.bias != nullptr ? _mm512_loadu_ps(p.bias + n0) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int t = 0; t < kAmxTokens; ++t) _mm512_storeu_ps(p.out + (t0 + t) * p.out_features + n0, _mm512_add_ps(acc[t], bias));
}

// Packed panels [panel_begin, panel_end) against every token row: each panel unpacked once into
// `buffer` (the decoded panel of quant_int8_panels.h: its weight vectors are AMX's B tiles), then
// 16 token rows at a time on the tiles and the rest on the VNNI tile.
template <Format F>
A1_AMX_FN void amx_packed_panels(const QuantGemmParams& p, const Q8Row* xq, int64_t panel_begin, int64_t panel_end,
                                 uint8_t* buffer) {
  const int64_t groups = p.in_features / kGroup;
  const int64_t x_stride = reinterpret_cast<const uint8_t*>(xq[1].q) - reinterpret_cast<const uint8_t*>(xq[0].q);
  const DecodedGroups decoded{int8_panel_at(buffer, groups)};
  const Int8Panel& panel = decoded.panel;
  load_amx_config();
  for (int64_t u = panel_begin; u < panel_end; ++u) {
    const PackedGroups source{p.weight + u * p.row_bytes};
    for (int64_t g = 0; g < groups; ++g) {
      __m512i w[8];
      __m512 scale, min;
      source.template load<F>(g, w, &scale, &min);
    #pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm512_store_si512(panel.bytes + (g * 8 + k) * 64, w[k]);
      _mm512_store_ps(panel.scale + g * kInt8PanelRows, scale);
      _mm512_store_ps(panel.min + g * kInt8PanelRows, min);
    }
    const int64_t n0 = u * kInt8PanelRows;
    int64_t t = 0;
    for (; t + kAmxTokens <= p.tokens; t += kAmxTokens) amx_panel_tile<F>(p, panel, xq, x_stride, n0, t);
    int8_panel_tokens<F>(p, decoded, xq, n0, kInt8PanelRows, t);
  }
  _tile_release();
}

A1_AMX_FN __attribute__((flatten)) void packed_panels_amx(const QuantGemmParams& p, const Q8Row* xq, int64_t b,
                                                          int64_t e, uint8_t* buffer) {
  switch (p.format) {
    case Format::kQ4_0: return amx_packed_panels<Format::kQ4_0>(p, xq, b, e, buffer);
    case Format::kQ4_1: return amx_packed_panels<Format::kQ4_1>(p, xq, b, e, buffer);
    case Format::kQ8_0: return amx_packed_panels<Format::kQ8_0>(p, xq, b, e, buffer);
    default: return;
  }
}

#undef A1_AMX_FN
#endif  // A1_HAVE_AMX

// The kernel for weights stored packed, for `tokens` token rows: AMX from kAmxTokens rows where it
// runs, else the VNNI tile; nullptr where int8 panels are not supported.
inline Int8PanelsFn select_packed_panels(simd::Isa isa, int64_t tokens) {
#if A1_HAVE_AMX
  if (tokens >= kAmxTokens && int8_panels_supported(isa) && amx_int8_ready()) return packed_panels_amx;
#endif
#if A1_HAVE_ISA_DISPATCH
  if (int8_panels_supported(isa)) return packed_panels_vnni;
#endif
  (void)isa, (void)tokens;
  return nullptr;
}

}  // namespace a1::quant
