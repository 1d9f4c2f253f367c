// The CPU kernel of a1::linear, for other CPU kernels that multiply by a weight matrix
// (linear_step_score's LM-head tiles) without a trip through the dispatcher.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

namespace a1 {

// x [T, K] @ weight^T (+ bias [N]) as a new contiguous [T, N], weight [N, K] or panels [N / 16, K, 16];
// see csrc/linear/linear_cpu.cpp.
at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias);

}  // namespace a1
