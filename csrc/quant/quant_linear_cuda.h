// The CUDA kernel of a1::quant_linear, for other CUDA glue that multiplies by a quantized weight
// (linear_step_score's LM head in GGUF blocks) without a trip through the dispatcher.
#pragma once
#include <ATen/core/Tensor.h>

#include <optional>

namespace a1 {

// x [T, K] float32 @ W^T (+ bias [N]) as a new contiguous [T, N] on x's CUDA device, W in GGUF
// blocks [N, K / block_size, block_bytes] (quant/quant_formats.h); see csrc/quant/quant_cuda.cpp.
at::Tensor quant_linear_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias);

}  // namespace a1
