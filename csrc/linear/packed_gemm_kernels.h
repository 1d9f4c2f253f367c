// Torch-free fp32 kernel of a1::linear on packed weights: out[T, N] = x[T, K] @ W^T + bias, with W
// stored as panels of 16 output features, packed[N / 16, K, 16] (packed[p, k, i] = W[16 p + i, k]).
//
// Why packed: from a row-major [N, K] weight a kernel must take dot products along K, whose
// register tile (R weight rows x T token rows, R + T loads per R * T FMAs, a horizontal sum per
// output) re-reads the token rows from L2 on every step and runs at a third of the FMA peak at
// 32 token rows (benchmarks/RESULTS.md §1). A panel holds 16 output features side by side for each
// k, so a k step is a few vector loads of weights, one broadcast per token row and an outer-product
// FMA per (token row, vector): TT x NP panels of accumulators, NP * 16 / W + TT loads per
// TT * NP * 16 / W FMAs, and no horizontal sums. One weight vector is loaded per k and panel
// whatever the number of token rows, so at one token the kernel still streams the weights once.
//
// Memory: a thread walks its panels group by group (NP panels) in K blocks of kKBlock; every token
// tile reuses the block from L1, and while the block is being multiplied the next one (the next K
// block, or the first block of the next panel group: the packed array is one contiguous stream)
// is prefetched a few lines per k step. Spreading the prefetches keeps DRAM busy during the
// compute-bound token tiles instead of stalling on the first tile of each block (at 32 token rows,
// 37 ms instead of 50 ms for all of SmolLM2-135M's weights on the benchmark machine).
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/simd_wide.h"

namespace a1::linear {

// Output features per panel: one AVX-512 vector, two AVX2 vectors, four SSE vectors.
constexpr int64_t kPanelWidth = 16;
// K steps per block: NP panels x 128 x 16 floats = 24 KiB of weights at NP = 3 stays in L1 with the
// token rows' block (32 x 128 floats = 16 KiB) beside it.
constexpr int64_t kKBlock = 128;

struct PackedGemmParams {
  const float* x_tiles;  // [T, K] by token tiles (pack_token_tiles): the tile at row t0 is [K, rows]
  const float* packed;   // [N / 16, K, 16] contiguous
  const float* bias;     // [N] or nullptr
  float* out;            // [T, N] contiguous
  int64_t tokens, out_features, in_features;  // T, N, K
};

// x [T, K] (rows x_stride apart) into dst by tiles of TT token rows: the tile at row t0 (a
// multiple of TT, rows = min(TT, T - t0)) is stored at dst + t0 * K as [K, rows], so a k step of
// the micro-kernel broadcasts `rows` consecutive floats from one pointer (from x's rows it would
// need a register per row, and the kernel has none to spare). Whole tiles of 8 rows move as 8 x 8
// register transposes (scalar copies took ~10% of a 32-row decode step).
template <int TT>
inline void pack_token_tiles(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features, float* dst) {
  const int64_t K = in_features;
  for (int64_t t0 = 0; t0 < tokens; t0 += TT) {
    const int64_t rows = std::min<int64_t>(TT, tokens - t0);
    float* block = dst + t0 * K;
    int64_t k = 0;
    if constexpr (TT == 8) {
      if (rows == 8) {
        using simd::f32x8;
        for (; k + 8 <= K; k += 8) {
          f32x8 r[8];
          for (int t = 0; t < 8; ++t) r[t] = simd::vload<f32x8>(x + (t0 + t) * x_stride + k);
          f32x8 lo[4], hi[4], q[8];
          for (int i = 0; i < 4; ++i) {  // unpacklo / unpackhi of row pairs
            lo[i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
            hi[i] = __builtin_shufflevector(r[2 * i], r[2 * i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
          }
          for (int i = 0; i < 2; ++i) {  // four rows per 128-bit lane: q[4 i + c] holds k = c and c + 4
            q[4 * i + 0] = __builtin_shufflevector(lo[2 * i], lo[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13);
            q[4 * i + 1] = __builtin_shufflevector(lo[2 * i], lo[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
            q[4 * i + 2] = __builtin_shufflevector(hi[2 * i], hi[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13);
            q[4 * i + 3] = __builtin_shufflevector(hi[2 * i], hi[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
          }
          for (int c = 0; c < 4; ++c) {  // rows 0-3 and 4-7 of k + c, then of k + c + 4
            simd::vstore(block + (k + c) * 8, __builtin_shufflevector(q[c], q[4 + c], 0, 1, 2, 3, 8, 9, 10, 11));
            simd::vstore(block + (k + c + 4) * 8, __builtin_shufflevector(q[c], q[4 + c], 4, 5, 6, 7, 12, 13, 14, 15));
          }
        }
      }
    }
    for (int64_t t = 0; t < rows; ++t) {
      const float* row = x + (t0 + t) * x_stride;
      for (int64_t kk = k; kk < K; ++kk) block[kk * rows + t] = row[kk];
    }
  }
}

// Where the next K block is and how to prefetch it while this one is multiplied: `rows` k rows of
// NP panels (one 64-byte line each), `per_step` lines per k step of the token tiles.
template <int NP>
struct NextBlock {
  const float* panels[NP];
  int64_t rows = 0, per_step = 0;
};

// Accumulators of TT token rows x NP panels over k in [k0, k0 + kb): started from the bias (or
// zero) on the first block, from `out` on the others, stored back to `out`. Prefetches lines
// [line, line + per_step * kb) of the next block on the way (line i = k row i / NP of panel i % NP).
template <class V, int NP, int TT>
inline void packed_tile(const PackedGemmParams& p, int64_t panel, int64_t t0, int64_t k0, int64_t kb,
                        const NextBlock<NP>& next, int64_t line) {
  constexpr int W = simd::width_v<V>;
  constexpr int VP = static_cast<int>(kPanelWidth) / W;  // vectors per panel
  constexpr int NV = NP * VP;
  const int64_t K = p.in_features, N = p.out_features;
  const float* weights = p.packed + (panel * K + k0) * kPanelWidth;  // panel j is K * 16 floats further
  const float* x_tile = p.x_tiles + t0 * K + k0 * TT;
  float* out = p.out + t0 * N + panel * kPanelWidth;

  V acc[TT][NV];
  for (int t = 0; t < TT; ++t) {
    for (int v = 0; v < NV; ++v) {
      if (k0 > 0) {
        acc[t][v] = simd::vload<V>(out + t * N + v * W);
      } else if (p.bias != nullptr) {
        acc[t][v] = simd::vload<V>(p.bias + panel * kPanelWidth + v * W);
      } else {
        acc[t][v] = V{};
      }
    }
  }
  // The prefetch cursor as (k row, panel) of the next block, advanced without divisions.
  int64_t pf_row = line / NP, pf_panel = line % NP;
  const int64_t panel_floats = K * kPanelWidth;
  for (int64_t k = 0; k < kb; ++k) {
    for (int64_t q = 0; q < next.per_step && pf_row < next.rows; ++q) {
      __builtin_prefetch(next.panels[pf_panel] + pf_row * kPanelWidth, 0, 2);  // into L2; never faults
      if (++pf_panel == NP) pf_panel = 0, ++pf_row;
    }
    V wv[NV];
    for (int j = 0; j < NP; ++j)
      for (int v = 0; v < VP; ++v) wv[j * VP + v] = simd::vload<V>(weights + j * panel_floats + k * kPanelWidth + v * W);
    for (int t = 0; t < TT; ++t) {
      const V xv = simd::vbroadcast_load<V>(x_tile + k * TT + t);
      for (int v = 0; v < NV; ++v) acc[t][v] += wv[v] * xv;
    }
  }
  for (int t = 0; t < TT; ++t)
    for (int v = 0; v < NV; ++v) simd::vstore(out + t * N + v * W, acc[t][v]);
}

// The last tile of rows < TT token rows, with a register tile of exactly that many.
template <class V, int NP, int R>
inline void packed_remainder_tile(int64_t rows, const PackedGemmParams& p, int64_t panel, int64_t t0, int64_t k0,
                                  int64_t kb, const NextBlock<NP>& next, int64_t line) {
  if constexpr (R >= 1) {
    if (rows == R) return packed_tile<V, NP, R>(p, panel, t0, k0, kb, next, line);
    packed_remainder_tile<V, NP, R - 1>(rows, p, panel, t0, k0, kb, next, line);
  }
}

// Panels [panel, panel + NP) for every token row: K blocks outermost, so a block is loaded from
// memory once and reused by every token tile.
template <class V, int NP, int TT>
inline void packed_panel_group(const PackedGemmParams& p, int64_t panel, int64_t panel_end) {
  const int64_t K = p.in_features, T = p.tokens;
  const int64_t tiles = (T + TT - 1) / TT;
  for (int64_t k0 = 0; k0 < K; k0 += kKBlock) {
    const int64_t kb = std::min(kKBlock, K - k0);
    // The next block: this group's next K block, else the next group's first (when it is ours).
    NextBlock<NP> next;
    int64_t next_k = k0 + kb, next_panel = panel;
    if (next_k >= K) next_k = 0, next_panel = panel + NP;
    if (next_panel + NP <= panel_end) next.rows = std::min(kKBlock, K - next_k);
    for (int j = 0; j < NP; ++j) next.panels[j] = p.packed + ((next_panel + j) * K + next_k) * kPanelWidth;
    next.per_step = (NP * next.rows + tiles * kb - 1) / (tiles * kb);
    int64_t line = 0, t = 0;
    for (; t + TT <= T; t += TT, line += next.per_step * kb) packed_tile<V, NP, TT>(p, panel, t, k0, kb, next, line);
    if (t < T) packed_remainder_tile<V, NP, TT - 1>(T - t, p, panel, t, k0, kb, next, line);
  }
}

// Panels [panel_begin, panel_end): groups of NP, then the last one or two panels on their own.
template <class V, int NP, int TT>
inline void packed_gemm_panels(const PackedGemmParams& p, int64_t panel_begin, int64_t panel_end) {
  int64_t panel = panel_begin;
  for (; panel + NP <= panel_end; panel += NP) packed_panel_group<V, NP, TT>(p, panel, panel_end);
  for (; panel < panel_end; ++panel) packed_panel_group<V, 1, TT>(p, panel, panel_end);
}

// Tiles per instruction set: AVX-512 has 32 registers (8 x 3 accumulators + 3 weight vectors + a
// broadcast), AVX2 16 (6 x 2 + 2 + 1), SSE 16 (2 x 4 + 4 + 1).
constexpr int kTokenTileAvx512 = 8, kTokenTileAvx2 = 6, kTokenTileBaseline = 2;
A1_TARGET_AVX512 inline void packed_gemm_panels_avx512(const PackedGemmParams& p, int64_t begin, int64_t end) {
  packed_gemm_panels<simd::f32x16, 3, kTokenTileAvx512>(p, begin, end);
}
A1_TARGET_AVX512 inline void pack_token_tiles_avx512(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features,
                                                     float* dst) {
  pack_token_tiles<kTokenTileAvx512>(x, x_stride, tokens, in_features, dst);
}
A1_TARGET_AVX2 inline void packed_gemm_panels_avx2(const PackedGemmParams& p, int64_t begin, int64_t end) {
  packed_gemm_panels<simd::f32x8, 1, kTokenTileAvx2>(p, begin, end);
}
A1_TARGET_AVX2 inline void pack_token_tiles_avx2(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features,
                                                 float* dst) {
  pack_token_tiles<kTokenTileAvx2>(x, x_stride, tokens, in_features, dst);
}
A1_TARGET_BASELINE inline void packed_gemm_panels_baseline(const PackedGemmParams& p, int64_t begin, int64_t end) {
  packed_gemm_panels<simd::f32x4, 1, kTokenTileBaseline>(p, begin, end);
}
A1_TARGET_BASELINE inline void pack_token_tiles_baseline(const float* x, int64_t x_stride, int64_t tokens,
                                                         int64_t in_features, float* dst) {
  pack_token_tiles<kTokenTileBaseline>(x, x_stride, tokens, in_features, dst);
}

// The kernel of an instruction set and the packing of x_tiles for its token tile.
struct PackedGemmKernel {
  void (*pack_fn)(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features, float* dst);
  void (*panels_fn)(const PackedGemmParams& p, int64_t panel_begin, int64_t panel_end);
};

inline PackedGemmKernel select_packed_gemm(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return {pack_token_tiles_avx512, packed_gemm_panels_avx512};
    case simd::Isa::kAvx2: return {pack_token_tiles_avx2, packed_gemm_panels_avx2};
    default: return {pack_token_tiles_baseline, packed_gemm_panels_baseline};
  }
}

// Panels are handed to threads in multiples of this (the AVX-512 group), so only the last thread
// runs a remainder group.
constexpr int64_t kPanelAlignment = 3;

}  // namespace a1::linear
