// Argument checks shared by the CPU and CUDA glue of a1::linear, so both devices reject a misuse
// with the same message naming the argument.
#pragma once
#include <optional>

#include "common/checks.h"

namespace a1 {

// x [T, K] and weight [N, K] of one float dtype on one device; bias [N] of that dtype, or none.
inline void check_linear_inputs(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_dim(x, "x", 2, "[T, K]");
  check_float_dtype(x, "x");
  check_dim(weight, "weight", 2, "[N, K]");
  check_same_device(weight, "weight", x, "x");
  check_same_dtype(weight, "weight", x, "x");
  check_size(weight, "weight", 1, x.size(1), "x.size(1) (K)");
  if (bias.has_value()) {
    check_dim(*bias, "bias", 1, "[N]");
    check_same_device(*bias, "bias", x, "x");
    check_same_dtype(*bias, "bias", x, "x");
    check_size(*bias, "bias", 0, weight.size(0), "weight.size(0) (N)");
  }
}

}  // namespace a1
