// CUDA glue of the scoring ops (step_score, linear_step_score): argument checks, device guard,
// current stream, outputs and workspace, then the torch-free launchers of csrc/score/*.cu.
// cu_seqlens given on the CPU is validated fully; given on the device it is only shape-checked
// (validating would need a host sync) and the kernels clamp its bounds to [0, T].
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "common/cuda_glue.h"
#include "linear/linear_checks.h"
#include "score/score_cuda.h"

namespace a1 {
namespace {

struct ScoreSetup {
  at::Tensor token_ids, cu_seqlens, token_logprob, step_nll;
  cuda::ScoreOutputs outputs() const {
    return {token_ids.data_ptr<int64_t>(), cu_seqlens.data_ptr<int64_t>(), step_nll.size(0),
            token_logprob.data_ptr<float>(), step_nll.data_ptr<float>()};
  }
};

// Shared checks of token_ids [T], cu_seqlens [B+1] and temperature; allocates the outputs.
ScoreSetup setup_score(const at::Tensor& like, int64_t num_tokens, const at::Tensor& token_ids,
                       const at::Tensor& cu_seqlens, double temperature) {
  const auto device = like.device();
  TORCH_CHECK(std::isfinite(temperature) && temperature > 0.0, "temperature must be a finite number > 0, got ",
              temperature);
  check_dim(token_ids, "token_ids", 1, "[T]");
  check_integral(token_ids, "token_ids");
  check_size(token_ids, "token_ids", 0, num_tokens, "the number of rows T");
  check_dim(cu_seqlens, "cu_seqlens", 1, "[B+1]");
  check_integral(cu_seqlens, "cu_seqlens");
  TORCH_CHECK(cu_seqlens.numel() >= 1, "cu_seqlens must have B+1 >= 1 entries");
  ScoreSetup s;
  s.token_ids = to_device(token_ids, "token_ids", device, at::kLong);
  if (cu_seqlens.device().is_cpu()) {
    s.cu_seqlens = checked_offsets(cu_seqlens, "cu_seqlens", num_tokens, "T").to(device);
  } else {
    s.cu_seqlens = to_device(cu_seqlens, "cu_seqlens", device, at::kLong);
  }
  const auto f32 = like.options().dtype(at::kFloat);
  s.token_logprob = like.new_empty({num_tokens}, f32);
  s.step_nll = like.new_empty({cu_seqlens.numel() - 1}, f32);
  return s;
}

std::tuple<at::Tensor, at::Tensor> step_score_cuda(const at::Tensor& logits_in, const at::Tensor& token_ids,
                                                   const at::Tensor& cu_seqlens, double temperature) {
  check_dim(logits_in, "logits", 2, "[T, V]");
  const auto kind = float_kind(logits_in, "logits");
  TORCH_CHECK(logits_in.device().is_cuda(), "logits must be a CUDA tensor, got ", logits_in.device());
  TORCH_CHECK(logits_in.size(1) > 0, "logits must have a non-empty vocabulary (V > 0)");
  const at::Tensor logits = logits_in.stride(1) == 1 ? logits_in : logits_in.contiguous();
  c10::cuda::CUDAGuard guard(logits.device());
  const ScoreSetup s = setup_score(logits, logits.size(0), token_ids, cu_seqlens, temperature);
  check_launch(cuda::launch_step_score(logits.data_ptr(), kind, logits.stride(0), logits.size(0), logits.size(1),
                                       static_cast<float>(temperature), s.outputs(), current_stream()),
               "step_score");
  return {s.token_logprob, s.step_nll};
}

std::tuple<at::Tensor, at::Tensor> linear_step_score_cuda(const at::Tensor& hidden_in, const at::Tensor& lm_head_in,
                                                          const at::Tensor& token_ids, const at::Tensor& cu_seqlens,
                                                          double temperature, int64_t chunk) {
  check_dim(hidden_in, "hidden", 2, "[T, H]");
  check_linear_weight_layout(lm_head_in, "lm_head");  // [V, H] or panels [V / 16, H, 16]
  const auto kind = float_kind(hidden_in, "hidden");
  const auto device = hidden_in.device();
  TORCH_CHECK(device.is_cuda(), "hidden must be a CUDA tensor, got ", device);
  check_on_device(lm_head_in, "lm_head", device);
  check_same_dtype(lm_head_in, "lm_head", hidden_in, "hidden");
  check_size(lm_head_in, "lm_head", 1, hidden_in.size(1), "hidden.size(1) (H)");
  TORCH_CHECK(linear_out_features(lm_head_in) > 0, "lm_head must have a non-empty vocabulary (V > 0)");
  TORCH_CHECK(chunk > 0, "chunk must be > 0, got ", chunk);
  const at::Tensor hidden = hidden_in.stride(1) == 1 ? hidden_in : hidden_in.contiguous();
  // The tiles below read [V, H] rows; panels (the layout of a1's CPU kernel) are copied back to rows.
  const at::Tensor lm_rows = linear_weight_as_rows(lm_head_in);
  const at::Tensor lm_head = lm_rows.stride(1) == 1 ? lm_rows : lm_rows.contiguous();
  const int64_t num_tokens = hidden.size(0), vocab = lm_head.size(0);
  c10::cuda::CUDAGuard guard(device);
  const ScoreSetup s = setup_score(hidden, num_tokens, token_ids, cu_seqlens, temperature);
  const int64_t per_launch = cuda::linear_score_vocab_per_launch(num_tokens, vocab, chunk);
  const at::Tensor workspace = hidden.new_empty({std::max<int64_t>(1, cuda::linear_score_workspace_floats(num_tokens, per_launch))},
                                                hidden.options().dtype(at::kFloat));
  const cuda::LinearScoreInputs in{hidden.data_ptr(), lm_head.data_ptr(), kind, hidden.stride(0), lm_head.stride(0),
                                   num_tokens, hidden.size(1), vocab, static_cast<float>(temperature)};
  check_launch(cuda::launch_linear_step_score(in, per_launch, workspace.data_ptr<float>(), s.outputs(),
                                              current_stream()),
               "linear_step_score");
  return {s.token_logprob, s.step_nll};
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("step_score", &a1::step_score_cuda);
  m.impl("linear_step_score", &a1::linear_step_score_cuda);
}
