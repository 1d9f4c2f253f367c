// The CPU kernel of a1::linear, for other CPU kernels that multiply by a weight matrix
// (linear_step_score's LM-head tiles) without a trip through the dispatcher.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

namespace a1 {

// x [T, K] @ weight^T (+ bias [N]) as a new contiguous [T, N], weight [N, K] or panels [N / 16, K, 16];
// see csrc/linear/linear_cpu.cpp.
at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias);

// fp32 x [T, K] @ weight^T as fp32 [T, N] for a weight of any float type: a bf16/fp16 weight [N, K]
// is streamed as it is for up to 32 rows (fp32 sums, never rounded to 16 bits: logits to score),
// widened to fp32 beyond.
at::Tensor linear_cpu_float_out(const at::Tensor& x, const at::Tensor& weight);

}  // namespace a1
