// Torch-free CPU kernels of rms_norm and fused_add_rms_norm, in transformers' LlamaRMSNorm order:
//
//   y = weight * to_dtype(x_f32 * rsqrt(mean(x_f32^2) + eps))
//
// The normalised row is rounded to the storage dtype BEFORE the weight multiply, and that
// product is rounded again (a bf16 * bf16 multiply in torch), so 16-bit outputs match
// transformers bit for bit up to the order of the sum of squares. fused_add_rms_norm first
// stores residual += x (rounded to the dtype, like `residual + hidden` in bf16) and normalises the
// rounded sum. fp32 rows are read and written in place with f32x8 loops; 16-bit rows go through
// fp32 stack buffers of kNormChunk elements, so no row allocates.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common/float_rows.h"
#include "common/simd.h"

namespace a1::norm {

constexpr int64_t kNormChunk = 256;

A1_MULTIVERSION inline float sum_of_squares(const float* x, int64_t n) {
  using namespace simd;
  f32x8 acc0{}, acc1{};  // two chains hide the add latency
  int64_t i = 0;
  for (; i + 2 * kWidth <= n; i += 2 * kWidth) {
    const f32x8 a = load(x + i), b = load(x + i + kWidth);
    acc0 += a * a;
    acc1 += b * b;
  }
  for (; i + kWidth <= n; i += kWidth) {
    const f32x8 a = load(x + i);
    acc0 += a * a;
  }
  float sum = horizontal_sum(acc0 + acc1);
  for (; i < n; ++i) sum += x[i] * x[i];
  return sum;
}

// residual[i] += x[i] (fp32 rows, in place); returns the sum of squares of the new residual.
A1_MULTIVERSION inline float add_residual_sum_of_squares(const float* x, float* residual, int64_t n) {
  using namespace simd;
  f32x8 acc{};
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    const f32x8 r = load(residual + i) + load(x + i);
    store(residual + i, r);
    acc += r * r;
  }
  float sum = horizontal_sum(acc);
  for (; i < n; ++i) {
    residual[i] += x[i];
    sum += residual[i] * residual[i];
  }
  return sum;
}

// out[i] = weight[i] * (x[i] * inv_rms), fp32; out may alias x.
A1_MULTIVERSION inline void scale_by_weight(const float* x, float inv_rms, const float* weight, float* out, int64_t n) {
  using namespace simd;
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(out + i, load(weight + i) * (load(x + i) * inv_rms));
  for (; i < n; ++i) out[i] = weight[i] * (x[i] * inv_rms);
}

inline float inverse_rms(float sum_of_squares, int64_t n, float eps) {
  return 1.0f / std::sqrt(sum_of_squares / static_cast<float>(n) + eps);
}

// Rows of [T, H] with a contiguous H dim. For rms_norm `out` is a separate tensor; for
// fused_add_rms_norm out == x and `residual` is set.
struct NormRows {
  void* x;  // read only by rms_norm
  int64_t x_row_stride;  // elements
  void* residual;
  int64_t residual_row_stride;
  const void* weight;  // [H], contiguous
  void* out;
  int64_t out_row_stride;
  FloatType type;  // of x, residual, weight and out
  int64_t hidden;
  float eps;
};

inline char* row_at(void* base, int64_t row, int64_t stride, FloatType type) {
  return static_cast<char*>(base) + row * stride * float_type_size(type);
}

// 16-bit second pass: out = round(weight * round(source * inv_rms)), a chunk at a time.
inline void write_normalized_16bit(const NormRows& p, const char* source, float inv_rms, char* out) {
  float values[kNormChunk], weights[kNormChunk];
  const int elem = float_type_size(p.type);
  const char* weight = static_cast<const char*>(p.weight);
  for (int64_t start = 0; start < p.hidden; start += kNormChunk) {
    const int len = static_cast<int>(std::min(kNormChunk, p.hidden - start));
    widen_row(source + start * elem, p.type, values, len, len);
    widen_row(weight + start * elem, p.type, weights, len, len);
    for (int i = 0; i < len; ++i) values[i] = weights[i] * round_to(p.type, values[i] * inv_rms);
    narrow_row(p.type, values, out + start * elem, len);
  }
}

// rms_norm of rows [begin, end): out = weight * rms_normalized(x).
inline void rms_norm_rows(const NormRows& p, int64_t begin, int64_t end) {
  for (int64_t t = begin; t < end; ++t) {
    const char* x = row_at(p.x, t, p.x_row_stride, p.type);
    char* out = row_at(p.out, t, p.out_row_stride, p.type);
    if (p.type == FloatType::kFloat32) {
      const float* row = reinterpret_cast<const float*>(x);
      const float inv_rms = inverse_rms(sum_of_squares(row, p.hidden), p.hidden, p.eps);
      scale_by_weight(row, inv_rms, static_cast<const float*>(p.weight), reinterpret_cast<float*>(out), p.hidden);
      continue;
    }
    float values[kNormChunk];
    float squares = 0.0f;
    for (int64_t start = 0; start < p.hidden; start += kNormChunk) {
      const int len = static_cast<int>(std::min(kNormChunk, p.hidden - start));
      widen_row(x + start * 2, p.type, values, len, len);
      squares += sum_of_squares(values, len);
    }
    write_normalized_16bit(p, x, inverse_rms(squares, p.hidden, p.eps), out);
  }
}

// fused_add_rms_norm of rows [begin, end): residual += x, then x = weight * rms_normalized(residual).
inline void fused_add_rms_norm_rows(const NormRows& p, int64_t begin, int64_t end) {
  for (int64_t t = begin; t < end; ++t) {
    char* x = row_at(p.x, t, p.x_row_stride, p.type);
    char* residual = row_at(p.residual, t, p.residual_row_stride, p.type);
    if (p.type == FloatType::kFloat32) {
      float* res = reinterpret_cast<float*>(residual);
      float* row = reinterpret_cast<float*>(x);
      const float inv_rms = inverse_rms(add_residual_sum_of_squares(row, res, p.hidden), p.hidden, p.eps);
      scale_by_weight(res, inv_rms, static_cast<const float*>(p.weight), row, p.hidden);
      continue;
    }
    float sums[kNormChunk], addend[kNormChunk];
    float squares = 0.0f;
    for (int64_t start = 0; start < p.hidden; start += kNormChunk) {
      const int len = static_cast<int>(std::min(kNormChunk, p.hidden - start));
      widen_row(residual + start * 2, p.type, sums, len, len);
      widen_row(x + start * 2, p.type, addend, len, len);
      for (int i = 0; i < len; ++i) sums[i] = round_to(p.type, sums[i] + addend[i]);  // the stored residual
      narrow_row(p.type, sums, residual + start * 2, len);
      squares += sum_of_squares(sums, len);
    }
    write_normalized_16bit(p, residual, inverse_rms(squares, p.hidden, p.eps), x);
  }
}

}  // namespace a1::norm
