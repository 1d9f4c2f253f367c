// Argument checks and weight layouts shared by the CPU and CUDA glue of a1::linear, so both
// devices accept the same weights and reject a misuse with the same message naming the argument.
#pragma once
#include <ATen/ops/addmm.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/mm.h>

#include <optional>

#include "common/checks.h"

namespace a1 {

// Output features per panel of a panel-packed weight [N / 16, K, 16] (linear/packed_gemm_kernels.h).
constexpr int64_t kLinearPanelWidth = 16;

// Panels are float; a uint8 3-D weight is GGUF blocks [N, K / block_size, block_bytes]
// (quant/quant_checks.h), whose N is its first dimension.
inline bool is_weight_panels(const at::Tensor& weight) {
  return weight.dim() == 3 && weight.scalar_type() != at::kByte;
}

// N of a weight [N, K], of its panels [N / 16, K, 16], of its GGUF blocks or of their packed
// panels [N / 16, K / 32, 16, block_bytes].
inline int64_t linear_out_features(const at::Tensor& weight) {
  return is_weight_panels(weight) || weight.dim() == 4 ? weight.size(0) * weight.size(2) : weight.size(0);
}

// A weight [N, K], or the same matrix as panels [N / 16, K, 16] (contiguous); `name` names it.
inline void check_linear_weight_layout(const at::Tensor& weight, const char* name) {
  TORCH_CHECK(weight.dim() == 2 || weight.dim() == 3, name, " must be [N, K] or panels [N / 16, K, 16], got ",
              weight.dim(), " dims ", weight.sizes());
  if (is_weight_panels(weight)) {
    check_size(weight, name, 2, kLinearPanelWidth, "the panel width 16");
    TORCH_CHECK(weight.is_contiguous(), name, " panels [N / 16, K, 16] must be contiguous, got strides ",
                weight.strides());
  }
}

// x [T, K] and a weight (check_linear_weight_layout) of one float dtype on one device; bias [N] of
// that dtype, or none.
inline void check_linear_inputs(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_dim(x, "x", 2, "[T, K]");
  check_float_dtype(x, "x");
  check_linear_weight_layout(weight, "weight");
  check_same_device(weight, "weight", x, "x");
  check_same_dtype(weight, "weight", x, "x");
  check_size(weight, "weight", 1, x.size(1), "x.size(1) (K)");
  if (bias.has_value()) {
    check_dim(*bias, "bias", 1, "[N]");
    check_same_device(*bias, "bias", x, "x");
    check_same_dtype(*bias, "bias", x, "x");
    TORCH_CHECK(bias->size(0) == linear_out_features(weight), "bias.size(0) must equal the weight's N (",
                linear_out_features(weight), "), got ", bias->size(0));
  }
}

// Rows [start, start + len) of a weight in either layout; on panels both must be multiples of 16.
inline at::Tensor linear_weight_rows(const at::Tensor& weight, int64_t start, int64_t len) {
  if (!is_weight_panels(weight)) return weight.narrow(0, start, len);
  TORCH_CHECK(start % kLinearPanelWidth == 0 && len % kLinearPanelWidth == 0,
              "rows of weight panels are taken 16 at a time, got [", start, ", ", start + len, ")");
  return weight.narrow(0, start / kLinearPanelWidth, len / kLinearPanelWidth);
}

// [N, K] of a weight in either layout (a copy for panels).
inline at::Tensor linear_weight_as_rows(const at::Tensor& weight) {
  return is_weight_panels(weight) ? weight.transpose(1, 2).reshape({linear_out_features(weight), weight.size(1)})
                                  : weight;
}

// The library's product for either layout: BLAS on [N, K]; on panels one batched product
// x @ panels[p] -> [N / 16, T, 16], laid out as [T, N].
inline at::Tensor linear_by_library(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  if (!is_weight_panels(weight)) {
    return bias.has_value() ? at::addmm(*bias, x, weight.t()) : at::mm(x, weight.t());
  }
  at::Tensor out = at::matmul(x, weight).permute({1, 0, 2}).reshape({x.size(0), linear_out_features(weight)});
  return bias.has_value() ? out.add_(*bias) : out;
}

}  // namespace a1
