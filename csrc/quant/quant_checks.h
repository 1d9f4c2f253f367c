// Argument checks shared by the CPU and CUDA glue of the quantized ops (dequantize, quant_linear),
// and by the ops that accept a quantized weight (decoder_layer, linear_step_score): both devices
// refuse the same inputs with the same message naming the argument.
#pragma once
#include <optional>

#include "common/checks.h"
#include "quant/quant_formats.h"
#include "quant/quant_panel_layout.h"

namespace a1 {

// A quantized weight: GGUF blocks, uint8 [N, K / block_size, block_bytes] (quant/quant_formats.h),
// or the CPU's packed panels of them, uint8 [N / 16, K / 32, 16, block_bytes] (quant_panel_layout.h).
inline bool is_quantized_weight(const at::Tensor& weight) { return weight.scalar_type() == at::kByte; }

inline bool is_quant_panels(const at::Tensor& weight) { return is_quantized_weight(weight) && weight.dim() == 4; }

// The format of a quantized weight named `name`, after checking its layout.
inline quant::Format check_quant_weight(const at::Tensor& weight, const char* name) {
  check_dtype(weight, name, at::kByte);
  TORCH_CHECK(weight.dim() == 3 || weight.dim() == 4, name,
              " must be GGUF blocks [N, K / block_size, block_bytes] or packed panels [N / 16, K / 32, 16, "
              "block_bytes], got shape ", weight.sizes());
  const int64_t last = weight.dim() - 1;
  quant::Format format{};
  TORCH_CHECK(quant::format_of_block_bytes(weight.size(last), &format), name, ".size(", last,
              ") must be the bytes of one block of Q4_0 (18), Q4_1 (20), Q8_0 (34), Q4_K (144), Q5_K (176) or "
              "Q6_K (210), got ", weight.size(last));
  if (weight.dim() == 4) {
    TORCH_CHECK(quant::is_panel_format(format), name, ": packed panels hold Q4_0, Q4_1 or Q8_0 blocks, got ",
                quant::format_name(format));
    check_size(weight, name, 2, quant::kInt8PanelRows, "the panel's 16 rows");
  }
  TORCH_CHECK(weight.is_contiguous(), name, " blocks must be contiguous, got strides ", weight.strides());
  return format;
}

// Refuses packed panels where only GGUF blocks are read (the CUDA kernels, the scoring head).
inline void check_not_quant_panels(const at::Tensor& weight, const char* name, const char* where) {
  TORCH_CHECK(!is_quant_panels(weight), name, " is in packed panels [N / 16, K / 32, 16, block_bytes], a1's CPU "
              "layout, which ", where, " does not read: unpack it first (a1_ext.quant_panels.unpack_panels)");
}

// K of a checked quantized weight.
inline int64_t quant_in_features(const at::Tensor& weight, quant::Format format) {
  return weight.size(1) * quant::format_info(format).block_size;
}

// N of a checked quantized weight.
inline int64_t quant_out_features(const at::Tensor& weight) {
  return weight.dim() == 4 ? weight.size(0) * weight.size(2) : weight.size(0);
}

// x [T, K] float32 with contiguous rows, weight (check_quant_weight) of K inputs on x's device,
// bias float32 [N] or none. Returns the weight's format.
inline quant::Format check_quant_linear_inputs(const at::Tensor& x, const at::Tensor& weight,
                                               const std::optional<at::Tensor>& bias) {
  check_dim(x, "x", 2, "[T, K]");
  check_dtype(x, "x", at::kFloat);
  const quant::Format format = check_quant_weight(weight, "weight");
  check_same_device(weight, "weight", x, "x");
  TORCH_CHECK(quant_in_features(weight, format) == x.size(1), "weight holds K = ", quant_in_features(weight, format),
              " inputs per row (", weight.size(1), " ", quant::format_name(format), " blocks) but x.size(1) is ",
              x.size(1));
  if (bias.has_value()) {
    check_dim(*bias, "bias", 1, "[N]");
    check_same_device(*bias, "bias", x, "x");
    check_dtype(*bias, "bias", at::kFloat);
    check_size(*bias, "bias", 0, quant_out_features(weight), "the weight's N");
  }
  return format;
}

// weight (check_quant_weight); rows, when given, int32/int64 [R] of row indices in [0, N) on any
// device (on a GPU the range check costs a host read). Returns the weight's format.
inline quant::Format check_dequantize_inputs(const at::Tensor& weight, const std::optional<at::Tensor>& rows) {
  const quant::Format format = check_quant_weight(weight, "weight");
  if (rows.has_value()) {
    check_dim(*rows, "rows", 1, "[R]");
    check_index_dtype(*rows, "rows");
    check_index_range(*rows, "rows", quant_out_features(weight));
  }
  return format;
}

}  // namespace a1
