// Argument checks shared by the CPU and CUDA glue of step_score and linear_step_score, so both
// devices accept and reject the same inputs with the same message naming the argument. Device-kind
// checks (which device each tensor may be on) stay in the glue.
#pragma once
#include <cmath>

#include "common/checks.h"
#include "linear/linear_checks.h"
#include "quant/quant_checks.h"

namespace a1 {

// logits [T, V]: one float dtype, a non-empty vocabulary.
inline void check_score_logits(const at::Tensor& logits) {
  check_dim(logits, "logits", 2, "[T, V]");
  check_float_dtype(logits, "logits");
  TORCH_CHECK(logits.size(1) > 0, "logits must have a non-empty vocabulary (V > 0)");
}

// hidden [T, H] and lm_head [V, H] or its panels [V / 16, H, 16] of hidden's dtype and device, or
// lm_head in GGUF blocks [V, H / block_size, block_bytes] (quant/quant_checks.h) with hidden
// float32; chunk (vocab rows per tile) > 0.
inline void check_linear_score_inputs(const at::Tensor& hidden, const at::Tensor& lm_head, int64_t chunk) {
  check_dim(hidden, "hidden", 2, "[T, H]");
  check_float_dtype(hidden, "hidden");
  check_same_device(lm_head, "lm_head", hidden, "hidden");
  if (is_quantized_weight(lm_head)) {
    const quant::Format format = check_quant_weight(lm_head, "lm_head");
    check_not_quant_panels(lm_head, "lm_head", "linear_step_score");
    check_dtype(hidden, "hidden", at::kFloat);
    TORCH_CHECK(quant_in_features(lm_head, format) == hidden.size(1), "lm_head holds H = ",
                quant_in_features(lm_head, format), " inputs per row but hidden.size(1) is ", hidden.size(1));
  } else {
    check_linear_weight_layout(lm_head, "lm_head");
    check_same_dtype(lm_head, "lm_head", hidden, "hidden");
    check_size(lm_head, "lm_head", 1, hidden.size(1), "hidden.size(1) (H)");
  }
  TORCH_CHECK(linear_out_features(lm_head) > 0, "lm_head must have a non-empty vocabulary (V > 0)");
  TORCH_CHECK(chunk > 0, "chunk must be > 0, got ", chunk);
}

// temperature finite and > 0 as the float32 the kernels divide by (any such value: the log-probs are
// exact at every scale; a double that rounds to 0 or inf in float32 would give NaN rows);
// token_ids int64 [T] in [0, V); cu_seqlens int32/int64 [B+1] offsets into the T rows. Returns
// cu_seqlens validated, as int64 on the CPU. Tensors on a GPU cost a host read (ids and offsets).
inline at::Tensor check_score_targets(const at::Tensor& token_ids, const at::Tensor& cu_seqlens, int64_t num_tokens,
                                      int64_t vocab, double temperature) {
  const float temperature_f = static_cast<float>(temperature);
  TORCH_CHECK(std::isfinite(temperature_f) && temperature_f > 0,
              "temperature must be finite and > 0 in float32, got ", temperature);
  check_dim(token_ids, "token_ids", 1, "[T]");
  check_dtype(token_ids, "token_ids", at::kLong);
  check_size(token_ids, "token_ids", 0, num_tokens, "the number of rows T");
  check_index_range(token_ids, "token_ids", vocab);
  return checked_offsets(cu_seqlens, "cu_seqlens", num_tokens, "the number of rows T");
}

}  // namespace a1
