// Block-level building blocks of the sampling kernels, one CTA per vocab row, no sort:
//   - raw row statistics (max / sum-exp for the model log-prob, first-max argmax for greedy);
//   - the temperature / top-k / top-p filter of a1_ext.reference.filtered_logits, found as one
//     threshold `cut` on the scaled logits (both rules keep every token >= some value) by MSB-first
//     radix selection over order-preserving 32-bit keys: 4 passes of 256-bin histograms, counts
//     for top-k, probability mass in 2^-40 fixed point for top-p (integer atomics, so the result
//     does not depend on thread scheduling);
//   - a loop over Philox groups of 4 vocab entries for the exponential race.
#pragma once
#include "common/cuda_row.cuh"
#include "common/philox.h"

namespace a1::cuda {

// Monotone float -> uint32 map (larger float, larger key); -0.0 is folded onto +0.0 so that equal
// floats get equal keys, as the twin's `>=` comparisons treat them.
__device__ __forceinline__ uint32_t order_key(float x) {
  if (x == 0.0f) x = 0.0f;
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float key_to_float(uint32_t key) {
  return __uint_as_float((key & 0x80000000u) ? (key & 0x7FFFFFFFu) : ~key);
}

struct RowScratch {
  unsigned long long hist[256];
  MaxSum max_sum[32];
  ArgMax arg_max[32];
  float floats[32];
  uint32_t digit;
  unsigned long long above;
};

struct RawStats {
  MaxSum softmax;  // of the raw logits: log_softmax(x)[v] = (x[v] - max) - log(sum)
  ArgMax argmax;   // first index of the maximum (greedy)
  bool usable;     // no NaN, no +inf, some value above -inf: a distribution to sample from
};

template <typename T>
__device__ RawStats raw_row_stats(const T* row, int64_t vocab, RowScratch& sc) {
  MaxSum acc{-INFINITY, 0.0f};
  ArgMax best{-INFINITY, vocab};
  int not_finite_below = 0, above_neg_inf = 0;
  for_each_element(row, vocab, [&](int64_t v, float x) {
    online_add(acc, x);
    best = better(best, ArgMax{x, v});
    not_finite_below |= !(x <= FLT_MAX);  // NaN or +inf
    above_neg_inf |= x > -INFINITY;
  });
  RawStats stats{block_merge(acc, sc.max_sum), block_argmax(best, sc.arg_max), false};
  stats.usable = !__syncthreads_or(not_finite_below) && __syncthreads_or(above_neg_inf);
  if (stats.argmax.index >= vocab) stats.argmax.index = 0;  // all-NaN row: argmax 0 like torch
  return stats;
}

// log_softmax of the raw row at x: (x - max) - log(sum), never x - (max + log(sum)), whose sum
// rounds to the spacing of max (8 at 1e8) and loses the log-prob at large logits.
__device__ __forceinline__ float raw_logprob(const RawStats& raw, float x) {
  return (x - raw.softmax.max) - logf(raw.softmax.sum);
}

// Sum over kept tokens (scaled >= cut) of exp(scaled - scaled_max): the softmax normaliser.
template <typename T>
__device__ float kept_sum_exp(const T* row, int64_t vocab, float temperature, float scaled_max, float cut,
                              RowScratch& sc) {
  float sum = 0.0f;
  for_each_element(row, vocab, [&](int64_t, float x) {
    const float s = x / temperature;
    if (s >= cut) sum += expf(s - scaled_max);
  });
  return block_sum(sum, sc.floats);
}

// Warp 0 picks the digit of this radix level: scanning bins from the largest key down with the
// weight of everything above carried in, the first bin where the cumulative weight reaches
// `target`; if none does, the lowest non-empty bin (keep everything down to the smallest value).
__device__ __forceinline__ void pick_digit(RowScratch& sc, unsigned long long above, double target) {
  if (threadIdx.x >= 32) return;
  const int lane = threadIdx.x;
  unsigned long long h[8], lane_total = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {  // lane owns descending positions lane*8 .. lane*8+7
    h[j] = sc.hist[255 - (lane * 8 + j)];
    lane_total += h[j];
  }
  unsigned long long inclusive = lane_total;
#pragma unroll
  for (int s = 1; s < 32; s <<= 1) {
    const unsigned long long other = __shfl_up_sync(kFullMask, inclusive, s);
    if (lane >= s) inclusive += other;
  }
  unsigned long long cum = above + inclusive - lane_total;
  int hit = 1 << 30, last_nonempty = -1;
  unsigned long long hit_above = 0;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    if (hit == (1 << 30) && h[j] > 0 && static_cast<double>(cum + h[j]) >= target) {
      hit = lane * 8 + j;
      hit_above = cum;
    }
    if (h[j] > 0) last_nonempty = lane * 8 + j;
    cum += h[j];
  }
  int first_hit = hit;
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) first_hit = min(first_hit, __shfl_xor_sync(kFullMask, first_hit, s));
  int lowest = last_nonempty;
#pragma unroll
  for (int s = 16; s > 0; s >>= 1) lowest = max(lowest, __shfl_xor_sync(kFullMask, lowest, s));
  if (first_hit != (1 << 30)) {
    if (hit == first_hit) {
      sc.digit = 255 - first_hit;
      sc.above = hit_above;
    }
  } else if (lane == 0) {
    sc.digit = lowest >= 0 ? 255 - lowest : 0;
    sc.above = above;  // unused afterwards: the fallback keeps descending to the minimum
  }
}

// Key of the threshold value among tokens with scaled >= floor: see pick_digit for the rule.
// weight(scaled) gives each candidate's weight (1 for top-k, fixed-point probability for top-p).
template <typename T, typename Weight>
__device__ uint32_t radix_select(const T* row, int64_t vocab, float temperature, float floor, Weight weight,
                                 double target, RowScratch& sc) {
  uint32_t prefix = 0, mask = 0;
  unsigned long long above = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) sc.hist[i] = 0;
    __syncthreads();
    for_each_element(row, vocab, [&](int64_t, float x) {
      const float s = x / temperature;
      if (!(s >= floor)) return;
      const uint32_t key = order_key(s);
      if ((key & mask) == prefix) atomicAdd(&sc.hist[(key >> shift) & 0xFFu], weight(s));
    });
    __syncthreads();
    pick_digit(sc, above, target);
    __syncthreads();
    prefix |= sc.digit << shift;
    mask |= 0xFFu << shift;
    above = sc.above;
    __syncthreads();
  }
  return prefix;
}

// What a row keeps after temperature / top-k / top-p: token v is kept iff x[v] / T >= cut, with
// probability exp(x[v] / T - scaled_max) / sum (sum filled only when `need_sum`).
struct RowFilter {
  float scaled_max, cut, sum;
};

template <typename T>
__device__ RowFilter row_filter(const T* row, int64_t vocab, float raw_max, float temperature, int64_t top_k,
                                float top_p, bool need_sum, RowScratch& sc) {
  RowFilter f{raw_max / temperature, -INFINITY, 0.0f};  // x -> x / T is monotone: max commutes
  if (top_k > 0 && top_k < vocab) {
    const uint32_t key = radix_select(row, vocab, temperature, -INFINITY, [](float) { return 1ull; },
                                      static_cast<double>(top_k), sc);
    f.cut = key_to_float(key);
  }
  if (top_p < 1.0f) {
    constexpr double kOne = 1099511627776.0;  // 2^40: probability fixed point
    const float sum_k = kept_sum_exp(row, vocab, temperature, f.scaled_max, f.cut, sc);
    const float scaled_max = f.scaled_max;
    const auto mass = [=](float s) { return __double2ull_rn(static_cast<double>(expf(s - scaled_max) / sum_k) * kOne); };
    const uint32_t key = radix_select(row, vocab, temperature, f.cut, mass, static_cast<double>(top_p) * kOne, sc);
    f.cut = fmaxf(f.cut, key_to_float(key));
  }
  if (need_sum) f.sum = kept_sum_exp(row, vocab, temperature, f.scaled_max, f.cut, sc);
  return f;
}

// Calls f(group, values[4], count) for each Philox group of 4 vocab entries (count < 4 only for
// the last group), spread over the CTA: the race draws one Philox block per group.
template <typename T, typename F>
__device__ __forceinline__ void for_each_group4(const T* row, int64_t vocab, F&& f) {
  const int64_t groups = (vocab + 3) / 4;
  for (int64_t g = threadIdx.x; g < groups; g += blockDim.x) {
    float values[4];
    const int count = static_cast<int>(min(int64_t{4}, vocab - 4 * g));
#pragma unroll
    for (int e = 0; e < 4; ++e) values[e] = e < count ? to_float(row[4 * g + e]) : -INFINITY;
    f(g, values, count);
  }
}

// Exponential-race key of a (log-)weight for uniform bits: argmax over v is a draw from the weights.
__device__ __forceinline__ float race_key(float log_weight, uint32_t bits) {
  return log_weight - logf(-logf(open_uniform_float(bits)));
}

}  // namespace a1::cuda
