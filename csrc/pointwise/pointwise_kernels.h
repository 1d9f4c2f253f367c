// Torch-free CPU kernels of the elementwise decoder ops, fp32 math on fp32 / bf16 / fp16 rows:
//
//   silu_and_mul      out[t, i] = silu(x[t, i]) * x[t, I + i] for x [T, 2I] (the SwiGLU gate)
//   rotary_embedding  x[t, h, i] = x[t, h, i] * cos[t, i] + x[t, h, (i + D/2) % D] * sin[t, i], in place
//                     (the "rotate half" layout; sin is pre-signed, -sin on the first half)
//
// Both round where the torch formulation they replace has a tensor of the model dtype: silu's
// result (transformers' act_fn(gate)) before the multiply by up, and x * cos before the rotated
// half is added (`out = x * cos; out.addcmul_(x.roll(D/2), sin)`); the result is rounded again. fp32
// rows are computed in place with f32x8 loops; 16-bit rows go through fp32 stack buffers.
#pragma once
#include <algorithm>
#include <cstdint>

#include "common/float_rows.h"
#include "common/simd.h"

namespace a1::pointwise {

// ----------------------------------------------------------------------------- silu_and_mul
constexpr int64_t kSiluChunk = 256;

// silu(x) = x * sigmoid(x) with sigmoid built from e = exp(-|x|), which never overflows:
// 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0. Relative error ~3e-7.
inline simd::f32x8 silu(simd::f32x8 x) {
  using namespace simd;
  const f32x8 zero = broadcast(0.0f), one = broadcast(1.0f);
  const f32x8 e = exp_nonpositive(x > zero ? -x : x);
  return x * ((x >= zero ? one : e) / (one + e));
}

// out[i] = silu(gate[i]) * up[i] in fp32.
A1_MULTIVERSION inline void silu_mul_f32(const float* gate, const float* up, float* out, int64_t n) {
  using namespace simd;
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(out + i, silu(load(gate + i)) * load(up + i));
  for (; i < n; ++i) out[i] = silu(broadcast(gate[i]))[0] * up[i];
}

// silu of a chunk in fp32, in place (16-bit path: rounding happens between the two steps).
A1_MULTIVERSION inline void silu_f32(float* x, int64_t n) {
  using namespace simd;
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) store(x + i, silu(load(x + i)));
  for (; i < n; ++i) x[i] = silu(broadcast(x[i]))[0];
}

struct SiluAndMulRows {
  const void* x;  // [T, 2 * width], each row contiguous
  int64_t x_row_stride;  // elements
  void* out;      // [T, width], each row contiguous
  int64_t out_row_stride;
  FloatType type;  // of x and out
  int64_t width;   // I
};

inline void silu_and_mul_rows(const SiluAndMulRows& p, int64_t begin, int64_t end) {
  const int elem = float_type_size(p.type);
  for (int64_t t = begin; t < end; ++t) {
    const char* gate = static_cast<const char*>(p.x) + t * p.x_row_stride * elem;
    const char* up = gate + p.width * elem;
    char* out = static_cast<char*>(p.out) + t * p.out_row_stride * elem;
    if (p.type == FloatType::kFloat32) {
      silu_mul_f32(reinterpret_cast<const float*>(gate), reinterpret_cast<const float*>(up),
                   reinterpret_cast<float*>(out), p.width);
      continue;
    }
    float gates[kSiluChunk], ups[kSiluChunk];
    for (int64_t start = 0; start < p.width; start += kSiluChunk) {
      const int len = static_cast<int>(std::min(kSiluChunk, p.width - start));
      widen_row(gate + start * elem, p.type, gates, len, len);
      widen_row(up + start * elem, p.type, ups, len, len);
      silu_f32(gates, len);
      for (int i = 0; i < len; ++i) gates[i] = round_to(p.type, gates[i]) * ups[i];
      narrow_row(p.type, gates, out + start * elem, len);
    }
  }
}

// ----------------------------------------------------------------------------- rotary_embedding
constexpr int kMaxHalfDim = 256;  // head_dim <= 512 (checked by the glue)

// One fp32 row. Elements i and i + D/2 read each other, so they are updated as a pair.
A1_MULTIVERSION inline void rotate_row_f32(float* x, const float* cos, const float* sin, int half) {
  using namespace simd;
  int i = 0;
  for (; i + kWidth <= half; i += kWidth) {
    const f32x8 lo = load(x + i), hi = load(x + half + i);
    store(x + i, lo * load(cos + i) + hi * load(sin + i));
    store(x + half + i, hi * load(cos + half + i) + lo * load(sin + half + i));
  }
  for (; i < half; ++i) {
    const float lo = x[i], hi = x[half + i];
    x[i] = lo * cos[i] + hi * sin[i];
    x[half + i] = hi * cos[half + i] + lo * sin[half + i];
  }
}

struct RotaryRows {
  void* x;  // [T, H, D], D contiguous
  int64_t x_token_stride, x_head_stride;  // elements
  const void* cos;  // [T, D], D contiguous
  const void* sin;
  int64_t table_token_stride;  // elements, shared by cos and sin
  FloatType type;  // of x, cos and sin
  int64_t num_heads;
  int head_dim;  // even, <= 2 * kMaxHalfDim
};

inline void rotate_tokens(const RotaryRows& p, int64_t begin, int64_t end) {
  const int elem = float_type_size(p.type), half = p.head_dim / 2;
  float cos[2 * kMaxHalfDim], sin[2 * kMaxHalfDim], row[2 * kMaxHalfDim];
  for (int64_t t = begin; t < end; ++t) {
    const char* cos_row = static_cast<const char*>(p.cos) + t * p.table_token_stride * elem;
    const char* sin_row = static_cast<const char*>(p.sin) + t * p.table_token_stride * elem;
    char* token = static_cast<char*>(p.x) + t * p.x_token_stride * elem;
    if (p.type == FloatType::kFloat32) {
      for (int64_t h = 0; h < p.num_heads; ++h)
        rotate_row_f32(reinterpret_cast<float*>(token + h * p.x_head_stride * elem),
                       reinterpret_cast<const float*>(cos_row), reinterpret_cast<const float*>(sin_row), half);
      continue;
    }
    widen_row(cos_row, p.type, cos, p.head_dim, p.head_dim);
    widen_row(sin_row, p.type, sin, p.head_dim, p.head_dim);
    for (int64_t h = 0; h < p.num_heads; ++h) {
      char* head = token + h * p.x_head_stride * elem;
      widen_row(head, p.type, row, p.head_dim, p.head_dim);
      for (int i = 0; i < half; ++i) {
        const float lo = row[i], hi = row[half + i];
        row[i] = round_to(p.type, lo * cos[i]) + hi * sin[i];
        row[half + i] = round_to(p.type, hi * cos[half + i]) + lo * sin[half + i];
      }
      narrow_row(p.type, row, head, p.head_dim);
    }
  }
}

}  // namespace a1::pointwise
