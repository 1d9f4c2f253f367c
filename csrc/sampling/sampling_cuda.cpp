// CUDA glue of the random ops (sample, speculative_verify): argument checks, device guard,
// current stream, outputs and workspace, then the torch-free launchers of csrc/sampling/*.cu.
//
// Host reads: none for sample. speculative_verify's output width max_k + 1 depends on the data,
// so cu_num_draft is read on the host once: free when it is given on the CPU (the scheduler knows
// the draft lengths), one small device-to-host copy when it is given on the device. num_accepted
// and everything else stay on the device. For CUDA-graph capture pass cu_num_draft in pinned CPU
// memory (its copy to the device is then an asynchronous, capturable memcpy) and the per-request
// parameters, seed and offset as device tensors.
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "common/cuda_glue.h"
#include "sampling/sampling_cuda.h"

namespace a1 {
namespace {

struct ParamTensors {
  at::Tensor temperature, top_k, top_p, seed, offset;
  cuda::SamplingParams view() const {
    return {temperature.data_ptr<float>(), top_k.data_ptr<int64_t>(), top_p.data_ptr<float>(),
            seed.data_ptr<int64_t>(), offset.data_ptr<int64_t>()};
  }
};

ParamTensors sampling_params(const at::Tensor& temperature, const at::Tensor& top_k, const at::Tensor& top_p,
                             const at::Tensor& seed, const at::Tensor& offset, int64_t rows,
                             const c10::Device& device) {
  TORCH_CHECK(at::isFloatingType(temperature.scalar_type()), "temperature must be a floating-point tensor, got ",
              temperature.scalar_type());
  TORCH_CHECK(at::isFloatingType(top_p.scalar_type()), "top_p must be a floating-point tensor, got ",
              top_p.scalar_type());
  check_integral(top_k, "top_k");
  check_integral(seed, "seed");
  check_integral(offset, "offset");
  return {row_param(temperature, "temperature", rows, device, at::kFloat),
          row_param(top_k, "top_k", rows, device, at::kLong), row_param(top_p, "top_p", rows, device, at::kFloat),
          row_param(seed, "seed", rows, device, at::kLong), row_param(offset, "offset", rows, device, at::kLong)};
}

std::tuple<at::Tensor, at::Tensor> sample_cuda(const at::Tensor& logits_in, const at::Tensor& temperature,
                                               const at::Tensor& top_k, const at::Tensor& top_p,
                                               const at::Tensor& seed, const at::Tensor& offset) {
  check_dim(logits_in, "logits", 2, "[B, V]");
  const auto kind = float_kind(logits_in, "logits");
  const auto device = logits_in.device();
  TORCH_CHECK(device.is_cuda(), "logits must be a CUDA tensor, got ", device);
  TORCH_CHECK(logits_in.size(1) > 0, "logits must have a non-empty vocabulary (V > 0)");
  const at::Tensor logits = logits_in.stride(1) == 1 ? logits_in : logits_in.contiguous();
  const int64_t rows = logits.size(0);
  c10::cuda::CUDAGuard guard(device);
  const ParamTensors params = sampling_params(temperature, top_k, top_p, seed, offset, rows, device);
  at::Tensor ids = logits.new_empty({rows}, logits.options().dtype(at::kLong));
  at::Tensor logprob = logits.new_empty({rows}, logits.options().dtype(at::kFloat));
  check_launch(cuda::launch_sample(logits.data_ptr(), kind, logits.stride(0), rows, logits.size(1), params.view(),
                                   ids.data_ptr<int64_t>(), logprob.data_ptr<float>(), current_stream()),
               "sample");
  return {ids, logprob};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> speculative_verify_cuda(
    const at::Tensor& target_in, const at::Tensor& draft_token_ids, const at::Tensor& cu_num_draft,
    const std::optional<at::Tensor>& draft_probs_in, const at::Tensor& temperature, const at::Tensor& top_k,
    const at::Tensor& top_p, const at::Tensor& seed, const at::Tensor& offset) {
  check_dim(target_in, "target_logits", 2, "[sum(k_b + 1), V]");
  const auto kind = float_kind(target_in, "target_logits");
  const auto device = target_in.device();
  TORCH_CHECK(device.is_cuda(), "target_logits must be a CUDA tensor, got ", device);
  const int64_t vocab = target_in.size(1);
  TORCH_CHECK(vocab > 0, "target_logits must have a non-empty vocabulary (V > 0)");
  check_dim(draft_token_ids, "draft_token_ids", 1, "[sum(k_b)]");
  check_integral(draft_token_ids, "draft_token_ids");
  const int64_t num_draft = draft_token_ids.size(0);
  // The one host read of this op (see the file comment); validates the offsets as well.
  const at::Tensor cu_host = checked_offsets(cu_num_draft, "cu_num_draft", num_draft, "draft_token_ids.size(0)");
  const int64_t batch = cu_host.numel() - 1;
  int64_t max_k = 0;
  const int64_t* cu = cu_host.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) max_k = std::max(max_k, cu[b + 1] - cu[b]);
  check_size(target_in, "target_logits", 0, num_draft + batch, "sum(k_b + 1) = draft_token_ids.size(0) + B");
  const at::Tensor target = target_in.stride(1) == 1 ? target_in : target_in.contiguous();

  c10::cuda::CUDAGuard guard(device);
  at::Tensor draft_probs;
  if (draft_probs_in.has_value()) {
    check_dim(*draft_probs_in, "draft_probs", 2, "[sum(k_b), V]");
    check_on_device(*draft_probs_in, "draft_probs", device);
    check_size(*draft_probs_in, "draft_probs", 0, num_draft, "draft_token_ids.size(0)");
    check_size(*draft_probs_in, "draft_probs", 1, vocab, "target_logits.size(1) (V)");
    draft_probs = draft_probs_in->stride(1) == 1 ? *draft_probs_in : draft_probs_in->contiguous();
  }
  const ParamTensors params = sampling_params(temperature, top_k, top_p, seed, offset, batch, device);
  const at::Tensor drafts = to_device(draft_token_ids, "draft_token_ids", device, at::kLong);
  const at::Tensor cu_device = to_device(cu_num_draft.device().is_cpu() ? cu_host : cu_num_draft, "cu_num_draft",
                                        device, at::kLong);

  const auto opts = target.options();
  at::Tensor out_ids = target.new_empty({batch, max_k + 1}, opts.dtype(at::kLong));
  at::Tensor num_accepted = target.new_empty({batch}, opts.dtype(at::kLong));
  at::Tensor target_logprob = target.new_empty({num_draft}, opts.dtype(at::kFloat));
  at::Tensor workspace =
      target.new_empty({std::max<int64_t>(1, cuda::verify_workspace_bytes(target.size(0)))}, opts.dtype(at::kByte));

  cuda::VerifyInputs in{target.data_ptr(),
                        kind,
                        target.stride(0),
                        drafts.data_ptr<int64_t>(),
                        cu_device.data_ptr<int64_t>(),
                        draft_probs.defined() ? draft_probs.data_ptr() : nullptr,
                        draft_probs.defined() ? float_kind(draft_probs, "draft_probs") : cuda::FloatKind::kFloat32,
                        draft_probs.defined() ? draft_probs.stride(0) : 0,
                        batch,
                        target.size(0),
                        vocab};
  const cuda::VerifyOutputs out{out_ids.data_ptr<int64_t>(), max_k + 1, num_accepted.data_ptr<int64_t>(),
                                target_logprob.data_ptr<float>()};
  check_launch(cuda::launch_speculative_verify(in, params.view(), workspace.data_ptr(), out, current_stream()),
               "speculative_verify");
  return {out_ids, num_accepted, target_logprob};
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("sample", &a1::sample_cuda);
  m.impl("speculative_verify", &a1::speculative_verify_cuda);
}
