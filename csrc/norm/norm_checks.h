// Argument checks shared by the CPU and CUDA glue of the RMSNorm ops, so that both devices
// reject a misuse with the same message naming the argument. Device-kind checks stay in the glue.
#pragma once
#include <ATen/MemoryOverlap.h>

#include <cmath>

#include "common/checks.h"

namespace a1 {

// x [T, H] and weight [H] with one float dtype on one device; eps finite and >= 0.
inline void check_norm_inputs(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check_dim(x, "x", 2, "[T, H]");
  check_float_dtype(x, "x");
  check_dim(weight, "weight", 1, "[H]");
  check_same_device(weight, "weight", x, "x");
  check_same_dtype(weight, "weight", x, "x");
  check_size(weight, "weight", 0, x.size(1), "x.size(1) (H)");
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, "eps must be finite and >= 0, got ", eps);
}

// An in-place [T, H] operand: rows may be strided but each row must be one contiguous run.
inline void check_rows_contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.stride(1) == 1 || t.size(1) <= 1, name,
              " must have a contiguous last dim (row-strided is fine), got strides ", t.strides());
}

// fused_add_rms_norm's residual: x's shape, dtype and device; both written in place, so neither may
// overlap itself or the other.
inline void check_fused_residual(const at::Tensor& x, const at::Tensor& residual) {
  TORCH_CHECK(residual.sizes() == x.sizes(), "residual must have x's shape ", x.sizes(), ", got ", residual.sizes());
  check_same_device(residual, "residual", x, "x");
  check_same_dtype(residual, "residual", x, "x");
  check_rows_contiguous(x, "x");
  check_rows_contiguous(residual, "residual");
  at::assert_no_internal_overlap(x);
  at::assert_no_internal_overlap(residual);
  const auto overlap = at::get_overlap_status(x, residual);
  TORCH_CHECK(overlap != at::MemOverlapStatus::Full && overlap != at::MemOverlapStatus::Partial,
              "residual must not share memory with x");
}

}  // namespace a1
