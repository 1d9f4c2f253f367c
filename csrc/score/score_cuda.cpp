// CUDA glue of the scoring ops (step_score, linear_step_score): argument checks, device guard,
// current stream, outputs and workspace, then the torch-free launchers of csrc/score/*.cu.
// The checks are score/score_checks.h, shared with the CPU glue: token_ids and cu_seqlens are
// validated fully wherever they are (on the device that costs a host read, as the values must be
// known to refuse them). An LM head in GGUF blocks is scored through quant_linear's CUDA kernels.
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

#include "common/cuda_glue.h"
#include "quant/quant_linear_cuda.h"
#include "score/score_checks.h"
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

// The shared checks of token_ids [T], cu_seqlens [B+1] and temperature (score/score_checks.h),
// then both on the device and the outputs allocated.
ScoreSetup setup_score(const at::Tensor& like, int64_t num_tokens, int64_t vocab, const at::Tensor& token_ids,
                       const at::Tensor& cu_seqlens, double temperature) {
  const auto device = like.device();
  const at::Tensor offsets = check_score_targets(token_ids, cu_seqlens, num_tokens, vocab, temperature);
  ScoreSetup s;
  s.token_ids = to_device(token_ids, "token_ids", device, at::kLong);
  s.cu_seqlens = cu_seqlens.device() == device ? to_device(cu_seqlens, "cu_seqlens", device, at::kLong)
                                               : to_device(offsets, "cu_seqlens", device, at::kLong);
  const auto f32 = like.options().dtype(at::kFloat);
  s.token_logprob = like.new_empty({num_tokens}, f32);
  s.step_nll = like.new_empty({cu_seqlens.numel() - 1}, f32);
  return s;
}

std::tuple<at::Tensor, at::Tensor> step_score_cuda(const at::Tensor& logits_in, const at::Tensor& token_ids,
                                                   const at::Tensor& cu_seqlens, double temperature) {
  check_score_logits(logits_in);
  const auto kind = checked_float_type(logits_in, "logits");
  TORCH_CHECK(logits_in.device().is_cuda(), "logits must be a CUDA tensor, got ", logits_in.device());
  const at::Tensor logits = logits_in.stride(1) == 1 ? logits_in : logits_in.contiguous();
  c10::cuda::CUDAGuard guard(logits.device());
  const ScoreSetup s = setup_score(logits, logits.size(0), logits.size(1), token_ids, cu_seqlens, temperature);
  check_launch(cuda::launch_step_score(logits.data_ptr(), kind, logits.stride(0), logits.size(0), logits.size(1),
                                       static_cast<float>(temperature), s.outputs(), current_stream()),
               "step_score");
  return {s.token_logprob, s.step_nll};
}

// Floats of logits a quantized head's scoring holds at once (128 MiB).
constexpr int64_t kQuantScoreLogitsFloats = int64_t{1} << 25;

// linear_step_score with an LM head in GGUF blocks (hidden float32, checked): logits of a slice of
// token rows by quant_linear (the blocks are never widened whole), log-probs by step_score's row
// kernel, the segment means once at the end. The slices keep the [T, V] logits in flight bounded.
std::tuple<at::Tensor, at::Tensor> quantized_head_score(const at::Tensor& hidden, const at::Tensor& lm_head,
                                                        const at::Tensor& token_ids, const at::Tensor& cu_seqlens,
                                                        double temperature) {
  const int64_t num_tokens = hidden.size(0), vocab = lm_head.size(0);
  const ScoreSetup s = setup_score(hidden, num_tokens, vocab, token_ids, cu_seqlens, temperature);
  const int64_t slice = std::max<int64_t>(1, kQuantScoreLogitsFloats / vocab);
  for (int64_t t0 = 0; t0 < num_tokens; t0 += slice) {
    const int64_t n = std::min(slice, num_tokens - t0);
    const at::Tensor logits = quant_linear_cuda(hidden.narrow(0, t0, n), lm_head, std::nullopt);
    const cuda::ScoreOutputs rows{s.token_ids.data_ptr<int64_t>() + t0, nullptr, 0,
                                  s.token_logprob.data_ptr<float>() + t0, nullptr};  // no segments here
    check_launch(cuda::launch_step_score(logits.data_ptr(), FloatType::kFloat32, logits.stride(0), n, vocab,
                                         static_cast<float>(temperature), rows, current_stream()),
                 "linear_step_score");
  }
  check_launch(cuda::launch_segment_nll(s.outputs(), num_tokens, current_stream()), "linear_step_score");
  return {s.token_logprob, s.step_nll};
}

std::tuple<at::Tensor, at::Tensor> linear_step_score_cuda(const at::Tensor& hidden_in, const at::Tensor& lm_head_in,
                                                          const at::Tensor& token_ids, const at::Tensor& cu_seqlens,
                                                          double temperature, int64_t chunk) {
  check_linear_score_inputs(hidden_in, lm_head_in, chunk);
  const auto kind = checked_float_type(hidden_in, "hidden");
  const auto device = hidden_in.device();
  TORCH_CHECK(device.is_cuda(), "hidden must be a CUDA tensor, got ", device);
  const at::Tensor hidden = hidden_in.stride(1) == 1 ? hidden_in : hidden_in.contiguous();
  if (is_quantized_weight(lm_head_in)) {
    c10::cuda::CUDAGuard guard(device);
    return quantized_head_score(hidden, lm_head_in, token_ids, cu_seqlens, temperature);
  }
  // The tiles below read [V, H] rows; panels (the layout of a1's CPU kernel) are copied back to rows.
  const at::Tensor lm_rows = linear_weight_as_rows(lm_head_in);
  const at::Tensor lm_head = lm_rows.stride(1) == 1 ? lm_rows : lm_rows.contiguous();
  const int64_t num_tokens = hidden.size(0), vocab = lm_head.size(0);
  c10::cuda::CUDAGuard guard(device);
  const ScoreSetup s = setup_score(hidden, num_tokens, vocab, token_ids, cu_seqlens, temperature);
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
