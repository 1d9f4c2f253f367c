// Argument checks shared by the CPU and CUDA glue of silu_and_mul and rotary_embedding, so both
// devices reject a misuse with the same message naming the argument. Device-kind checks stay in
// the glue.
#pragma once
#include <ATen/MemoryOverlap.h>

#include <utility>

#include "common/checks.h"

namespace a1 {

constexpr int64_t kMaxRotaryHeadDim = 512;

// x [T, 2I]: gate columns [0, I), up columns [I, 2I), one float dtype.
inline void check_silu_and_mul_input(const at::Tensor& x) {
  check_dim(x, "x", 2, "[T, 2 * I] (gate and up side by side)");
  check_float_dtype(x, "x");
  TORCH_CHECK(x.size(1) % 2 == 0, "x.size(1) must be even (gate and up halves), got ", x.size(1));
}

// x [T, H, D] rotated in place (D contiguous, even, <= 512); cos, sin [T, D] of x's dtype and device.
inline void check_rotary_inputs(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  check_dim(x, "x", 3, "[T, num_heads, head_dim]");
  check_float_dtype(x, "x");
  const int64_t head_dim = x.size(2);
  TORCH_CHECK(head_dim % 2 == 0 && head_dim <= kMaxRotaryHeadDim, "x.size(2) (head_dim) must be even and <= ",
              kMaxRotaryHeadDim, ", got ", head_dim);
  TORCH_CHECK(x.stride(2) == 1 || head_dim <= 1, "x must have a contiguous head_dim (it is rotated in place), got strides ",
              x.strides());
  at::assert_no_internal_overlap(x);
  for (const auto& [table, name] : {std::pair{&cos, "cos"}, std::pair{&sin, "sin"}}) {
    check_dim(*table, name, 2, "[T, head_dim]");
    check_same_device(*table, name, x, "x");
    check_same_dtype(*table, name, x, "x");
    check_size(*table, name, 0, x.size(0), "x.size(0) (T)");
    check_size(*table, name, 1, head_dim, "x.size(2) (head_dim)");
  }
}

// cos and sin with one row stride and contiguous rows, as the kernels read them (the common case,
// slices of one table or two contiguous gathers, is returned as is).
inline std::pair<at::Tensor, at::Tensor> rotary_tables(const at::Tensor& cos, const at::Tensor& sin) {
  if (cos.strides() == sin.strides() && cos.stride(1) == 1) return {cos, sin};
  return {cos.contiguous(), sin.contiguous()};
}

}  // namespace a1
