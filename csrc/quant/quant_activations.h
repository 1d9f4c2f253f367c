// The activation side of a1::quant_linear: every token row is rounded to 8 bits per 32-value group,
// as llama.cpp rounds activations for its CPU matmuls (block_q8_0): d = max|x| / 127, q = round(x / d)
// (ties to even) in [-127, 127], and the row the weights multiply is q * d. Every path of the op
// (the integer kernels of quant_int8_kernels.h, the fp32 decode and panel kernels, the twin in
// a1_ext/quant_reference.py) multiplies by exactly these values, so the op means one thing whatever
// the CPU and the number of rows: out = round8(x) @ dequantize(W)^T + bias.
//
// Why round: the weights are 4-8 bit integers, so with 8-bit activations 32 products of a group are
// one integer dot product (vpdpbusd), where decoding the weights to fp32 takes ~2 vector operations
// per 16 weights (benchmarks/RESULTS.md §10).
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/simd_wide.h"
#include "quant/quant_formats.h"

namespace a1::quant {

// One rounded token row: q [K] int8, and per group g: d[g]; sum[g] = d[g] * sum(q), the min term of
// Q4_1 / Q4_K / Q5_K; offsets[8 g .. 8 g + 8) = -zero_point * (sums of q over each 4 consecutive
// values): a format's zero point taken off through the integer dot product's accumulator input,
// one per 32-bit lane; zero_sum[g] = -zero_point * sum(q). For the 512-bit decode kernels
// (quant_int8_pairs.h), which sum 16 groups' dot products into one vector in a fixed order
// (kPairOrder, or kQuadOrder for the Q4 formats), the same per chunk c of 16 groups in that order:
// chunk_d, chunk_sum and chunk_offset [16 c + i] for group 16 c + order[i], zeros where that group
// does not exist. q has zero bytes after K up to a multiple of 64 (an odd group count's last group
// pairs with zeros). With quads, quad_q holds q by quads of groups as the Q4 kernel reads them:
// 64 bytes of each group's values 0-15, then 64 bytes of their values 16-31 (zeros past K).
struct Q8Row {
  int8_t* q;
  float* d;
  float* sum;
  int32_t* offsets;
  float* chunk_d;
  float* chunk_sum;
  int32_t* chunk_offset;
  int32_t* zero_sum;
  int8_t* quad_q;
};

// The group whose dot product lane i of the 512-bit kernels' reduced vector holds: summing pairs
// of groups (Q8_0) or quads of half groups (Q4_0, Q4_1).
constexpr int kPairOrder[16] = {0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15};
constexpr int kQuadOrder[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// How a kernel reads the rounded rows: the zero point it takes off and the order of its chunks.
struct Q8Layout {
  int zero_point;
  bool quads;
};

inline int64_t round_up_64(int64_t n) { return (n + 63) / 64 * 64; }

// Bytes a Q8Row of K values needs (each array 64-byte aligned).
inline int64_t q8_row_bytes(int64_t K) {
  const int64_t groups = K / kGroup, chunks = (groups + 15) / 16;
  return round_up_64(K) + 3 * round_up_64(groups * 4) + round_up_64(groups * 32) + 3 * chunks * 64 +
         (groups + 3) / 4 * 128;
}

inline Q8Row q8_row_at(uint8_t* base, int64_t K) {
  const int64_t groups = K / kGroup, chunks = (groups + 15) / 16;
  const int64_t q_bytes = round_up_64(K), scale_bytes = round_up_64(groups * 4), offset_bytes = round_up_64(groups * 32);
  uint8_t* chunk_base = base + q_bytes + 2 * scale_bytes + offset_bytes;
  return {reinterpret_cast<int8_t*>(base), reinterpret_cast<float*>(base + q_bytes),
          reinterpret_cast<float*>(base + q_bytes + scale_bytes),
          reinterpret_cast<int32_t*>(base + q_bytes + 2 * scale_bytes), reinterpret_cast<float*>(chunk_base),
          reinterpret_cast<float*>(chunk_base + chunks * 64), reinterpret_cast<int32_t*>(chunk_base + 2 * chunks * 64),
          reinterpret_cast<int32_t*>(chunk_base + 3 * chunks * 64),
          reinterpret_cast<int8_t*>(chunk_base + 3 * chunks * 64 + round_up_64(groups * 4))};
}

// Rounds x [K] (K a multiple of 32) into `row` (when row.q is not nullptr, laid out for `layout`)
// and/or into the floats q * d at `rounded` (when not nullptr). A group holding inf or
// NaN gets d = NaN, so every product it enters is NaN (as the twin's q * d is) instead of a finite
// value that hides it. Plain loops over one group: compiled per instruction set (the entries below),
// the compiler vectorizes them.
inline void round_row_q8(const float* x, int64_t K, const Q8Row& row, Q8Layout layout, float* rounded) {
  const int zero_point = layout.zero_point;
  for (int64_t g = 0; g < K / kGroup; ++g) {
    const float* xs = x + g * kGroup;
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < kGroup; ++i) {
      const float a = std::fabs(xs[i]);
      amax = a > amax ? a : amax;
      finite &= a <= std::numeric_limits<float>::max();
    }
    const float d = finite ? amax / 127.0f : std::numeric_limits<float>::quiet_NaN();
    const float inverse = finite && d != 0.0f ? 1.0f / d : 0.0f;
    int8_t q[kGroup];
    for (int i = 0; i < kGroup; ++i) {
      const float scaled = std::nearbyint(xs[i] * inverse);  // ties to even, as torch.round
      q[i] = static_cast<int8_t>(scaled > 127.0f ? 127.0f : scaled < -127.0f ? -127.0f : scaled);
    }
    if (rounded != nullptr)
      for (int i = 0; i < kGroup; ++i) rounded[g * kGroup + i] = static_cast<float>(q[i]) * d;
    if (row.q == nullptr) continue;
    int32_t total = 0;
    for (int i = 0; i < kGroup; ++i) total += q[i], row.q[g * kGroup + i] = q[i];
    for (int lane = 0; lane < 8; ++lane)
      row.offsets[g * 8 + lane] = -zero_point * (q[4 * lane] + q[4 * lane + 1] + q[4 * lane + 2] + q[4 * lane + 3]);
    row.d[g] = d;
    row.sum[g] = d * static_cast<float>(total);
    row.zero_sum[g] = -zero_point * total;
  }
  if (row.q == nullptr) return;
  const int64_t groups = K / kGroup;
  for (int64_t i = K; i < round_up_64(K); ++i) row.q[i] = 0;
  for (int64_t c = 0; c < (groups + 15) / 16; ++c)
    for (int i = 0; i < 16; ++i) {
      const int64_t g = 16 * c + (layout.quads ? kQuadOrder : kPairOrder)[i];
      const bool present = g < groups;
      row.chunk_d[16 * c + i] = present ? row.d[g] : 0.0f;
      row.chunk_sum[16 * c + i] = present ? row.sum[g] : 0.0f;
      row.chunk_offset[16 * c + i] = present ? row.zero_sum[g] : 0;
    }
  if (!layout.quads) return;
  for (int64_t g = 0; g < (groups + 3) / 4 * 4; ++g) {
    int8_t* lo = row.quad_q + (g / 4) * 128 + (g % 4) * 16;
    for (int i = 0; i < 16; ++i) {
      lo[i] = g < groups ? row.q[g * kGroup + i] : 0;
      lo[64 + i] = g < groups ? row.q[g * kGroup + 16 + i] : 0;
    }
  }
}

#define A1_ROUND_ROW_ENTRY(isa, target)                                                                    \
  target inline void round_row_q8_##isa(const float* x, int64_t K, const Q8Row& row, Q8Layout layout,    \
                                        float* rounded) {                                                \
    round_row_q8(x, K, row, layout, rounded);                                                            \
  }
A1_ROUND_ROW_ENTRY(avx512, A1_TARGET_AVX512)
A1_ROUND_ROW_ENTRY(avx2, A1_TARGET_AVX2)
A1_ROUND_ROW_ENTRY(baseline, A1_TARGET_BASELINE)
#undef A1_ROUND_ROW_ENTRY

using RoundRowFn = void (*)(const float*, int64_t, const Q8Row&, Q8Layout, float*);

inline RoundRowFn select_round_row(simd::Isa isa) {
  switch (isa) {
    case simd::Isa::kAvx512: return round_row_q8_avx512;
    case simd::Isa::kAvx2: return round_row_q8_avx2;
    default: return round_row_q8_baseline;
  }
}

}  // namespace a1::quant
