// Torch-free softmax building blocks for the CPU kernels: a row's running max and sum of exp,
// merged chunk by chunk so each chunk is read from L1 twice (max, then sum) and the row once
// from memory. Rows of any element type are converted to float one chunk at a time.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "common/simd.h"

namespace a1 {

constexpr int64_t kSoftmaxChunk = 1024;

A1_MULTIVERSION inline float max_of(const float* x, int64_t n) {
  using namespace simd;
  f32x8 acc = broadcast(-std::numeric_limits<float>::infinity());
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) acc = max(acc, load(x + i));
  float result = horizontal_max(acc);
  for (; i < n; ++i) result = x[i] > result ? x[i] : result;
  return result;
}

// sum over i of exp(x[i] / temperature - shift), for shift >= max(x) / temperature. Divided, not
// multiplied by 1 / temperature, so the scaled logits round exactly like the twin's and CUDA's;
// x / 1 is x, so temperature 1 skips the division.
A1_MULTIVERSION inline float sum_exp(const float* x, int64_t n, float temperature, float shift) {
  using namespace simd;
  f32x8 acc{};
  int64_t i = 0;
  if (temperature == 1.0f) {
    for (; i + kWidth <= n; i += kWidth) acc += exp_nonpositive(load(x + i) - shift);
  } else {
    for (; i + kWidth <= n; i += kWidth) acc += exp_nonpositive(load(x + i) / temperature - shift);
  }
  float result = horizontal_sum(acc);
  for (; i < n; ++i) result += exp_nonpositive(x[i] / temperature - shift);
  return result;
}

// max and sum of exp(x / temperature - max) of one softmax row, built incrementally.
struct SoftmaxStats {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0.0f;

  // x -> x / temperature is monotone, so the max of the scaled chunk is its max, scaled.
  void add(const float* x, int64_t n, float temperature) {
    const float chunk_max = max_of(x, n) / temperature;
    if (chunk_max == -std::numeric_limits<float>::infinity()) return;  // all masked
    if (chunk_max > max) {
      sum *= std::exp(max - chunk_max);
      max = chunk_max;
    }
    sum += sum_exp(x, n, temperature, max);
  }

  // log_softmax at a scaled logit: (x - max) - log(sum), never x - (max + log(sum)), whose sum
  // rounds to the spacing of max (0.0625 at 1e6) and loses the log-prob at large scaled logits.
  float logprob(float scaled_x) const { return (scaled_x - max) - std::log(sum); }
};

template <typename T>
inline void to_float(const T* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(src[i]);
}

// Softmax statistics of row / temperature for a row of any float-like element type.
template <typename T>
inline SoftmaxStats row_softmax_stats(const T* row, int64_t n, float temperature) {
  SoftmaxStats stats;
  if constexpr (std::is_same_v<T, float>) {
    for (int64_t start = 0; start < n; start += kSoftmaxChunk)
      stats.add(row + start, std::min(kSoftmaxChunk, n - start), temperature);
  } else {
    float buffer[kSoftmaxChunk];
    for (int64_t start = 0; start < n; start += kSoftmaxChunk) {
      const int64_t len = std::min(kSoftmaxChunk, n - start);
      to_float(row + start, buffer, len);
      stats.add(buffer, len, temperature);
    }
  }
  return stats;
}

}  // namespace a1
