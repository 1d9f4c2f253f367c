// The activation side of a1::quant_linear: every token row is rounded to 8 bits per 32-value group,
// as llama.cpp quantizes activations for its CPU matmuls (block_q8_0 / q8_1): d = max|x| / 127,
// q = round(x / d) in [-127, 127], and the row the matmul multiplies is q * d. Both kernel paths
// and the twin (a1_ext/quant_reference.py) multiply by exactly these values; the integer kernels
// (quant_int8_kernels.h) take q and d, the fp32 ones the rounded floats.
//
// Why round the activations: the weights are 4-8 bit integers, so with 8-bit activations a group's
// dot product is one integer instruction (vpdpbusd) for 32 products, where decoding the weights to
// fp32 costs ~2 vector operations per weight (benchmarks/RESULTS.md §9).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "quant/quant_formats.h"

namespace a1::quant {

// One token row, rounded: q [K] int8, and per group g: d[g], the sum of the rounded values
// sum[g] = d[g] * sum(q) (the min term of Q4_1 / Q4_K / Q5_K), and lane_sums[8 g .. 8 g + 8): the
// sums of q over each 4 consecutive values (the offset term of Q4_0 / Q6_K / Q8_0, one per lane of
// the integer dot product).
struct Q8Row {
  int8_t* q;
  float* d;
  float* sum;
  int32_t* lane_sums;
};

// Bytes a Q8Row of K values needs (q, then d, sum and lane_sums, each 64-byte aligned).
inline int64_t q8_row_bytes(int64_t K) {
  const int64_t groups = K / kGroup;
  auto up = [](int64_t n) { return (n + 63) / 64 * 64; };
  return up(K) + 2 * up(groups * 4) + up(groups * 32);
}

inline Q8Row q8_row_at(uint8_t* base, int64_t K) {
  const int64_t groups = K / kGroup;
  auto up = [](int64_t n) { return (n + 63) / 64 * 64; };
  Q8Row row;
  row.q = reinterpret_cast<int8_t*>(base);
  row.d = reinterpret_cast<float*>(base + up(K));
  row.sum = reinterpret_cast<float*>(base + up(K) + up(groups * 4));
  row.lane_sums = reinterpret_cast<int32_t*>(base + up(K) + 2 * up(groups * 4));
  return row;
}

// Rounds x [K] (K a multiple of 32) into `row`, and writes the rounded floats q * d to rounded
// (K floats) unless it is nullptr. A group holding inf or NaN gets d = NaN, so the products it
// enters are NaN (as the twin's q * d is) instead of a finite value that hides them.
inline void quantize_row_q8(const float* x, int64_t K, const Q8Row& row, float* rounded) {
  for (int64_t g = 0; g < K / kGroup; ++g) {
    const float* xs = x + g * kGroup;
    float amax = 0.0f;
    bool finite = true;
    for (int i = 0; i < kGroup; ++i) {
      amax = std::fmax(amax, std::fabs(xs[i]));
      finite &= std::isfinite(xs[i]);
    }
    const float d = finite ? amax / 127.0f : NAN;
    const float inverse = d != 0.0f && finite ? 1.0f / d : 0.0f;
    int32_t total = 0;
    for (int i = 0; i < kGroup; ++i) {
      const float scaled = std::nearbyint(xs[i] * inverse);  // ties to even, as torch.round
      const int32_t q = static_cast<int32_t>(std::fmin(127.0f, std::fmax(-127.0f, scaled)));
      row.q[g * kGroup + i] = static_cast<int8_t>(q);
      total += q;
      if (rounded != nullptr) rounded[g * kGroup + i] = static_cast<float>(q) * d;
    }
    for (int lane = 0; lane < 8; ++lane) {
      const int8_t* four = row.q + g * kGroup + 4 * lane;
      row.lane_sums[g * 8 + lane] = four[0] + four[1] + four[2] + four[3];
    }
    row.d[g] = d;
    row.sum[g] = d * static_cast<float>(total);
  }
}

}  // namespace a1::quant
