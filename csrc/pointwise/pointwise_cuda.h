// Launchers of the elementwise decoder kernels (csrc/pointwise/pointwise.cu). Torch-free: the glue
// in pointwise_cuda.cpp passes raw pointers, element strides, the dtype tag and a stream. Same
// semantics (and roundings) as the CPU kernels of pointwise/pointwise_kernels.h.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

// out[t, i] = silu(x[t, i]) * x[t, width + i], silu's result rounded to the dtype before the
// multiply. Rows of x [num_rows, 2 * width] and out [num_rows, width] are contiguous.
LaunchStatus launch_silu_and_mul(const void* x, int64_t x_row_stride, void* out, int64_t out_row_stride, FloatType kind,
                                 int64_t num_rows, int64_t width, cudaStream_t stream);

struct RotaryArgs {
  void* x;  // [T, H, D] rotated in place, D contiguous
  int64_t x_token_stride, x_head_stride;
  const void* cos;  // [T, D], D contiguous; sin shares the row stride
  const void* sin;
  int64_t table_token_stride;
  FloatType kind;  // of x, cos and sin
  int64_t num_tokens, num_heads, head_dim;  // head_dim even
};

// x = x * cos + rotate_half(x) * sin per (token, head), x * cos rounded to the dtype first.
LaunchStatus launch_rotary_embedding(const RotaryArgs& args, cudaStream_t stream);

}  // namespace a1::cuda
