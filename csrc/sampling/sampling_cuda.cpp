// CUDA glue of the random ops (sample, sampling_probs, speculative_verify): argument checks, device guard,
// current stream, outputs and workspace, then the torch-free launchers of csrc/sampling/*.cu.
//
// The checks are sampling/sampling_checks.h, shared with the CPU glue, so both devices accept and
// reject the same inputs. Host reads: parameters, ids and draft_probs given on the device are
// validated there and one flag per check is read back; the kernels flag a row that is not a
// distribution (NaN, +inf, all -inf) and the glue reads that flag after the launch, so each call
// synchronises once with the stream (callers read the tokens right after anyway).
// speculative_verify's output width max_k + 1 depends on the data, so cu_num_draft is read on the
// host too: free when it is given on the CPU (the scheduler knows the draft lengths).
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <tuple>

#include "common/cuda_glue.h"
#include "sampling/sampling_checks.h"
#include "sampling/sampling_cuda.h"

namespace a1 {
namespace {

// The shared checks, then the parameters on the device as the kernels read them.
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
  const SamplingParamTensors p = check_sampling_params(temperature, top_k, top_p, seed, offset, rows);
  return {to_device(p.temperature, "temperature", device, at::kFloat), to_device(p.top_k, "top_k", device, at::kLong),
          to_device(p.top_p, "top_p", device, at::kFloat), to_device(p.seed, "seed", device, at::kLong),
          to_device(p.offset, "offset", device, at::kLong)};
}

// logits [B, V] checked, on a CUDA device, with unit stride along the vocabulary.
struct LogitRows {
  at::Tensor logits;
  FloatType kind;
  c10::Device device;
};

LogitRows cuda_logit_rows(const at::Tensor& logits_in) {
  check_sampling_logits(logits_in, "logits", "[B, V]");
  const auto kind = checked_float_type(logits_in, "logits");
  TORCH_CHECK(logits_in.device().is_cuda(), "logits must be a CUDA tensor, got ", logits_in.device());
  return {logits_in.stride(1) == 1 ? logits_in : logits_in.contiguous(), kind, logits_in.device()};
}

std::tuple<at::Tensor, at::Tensor> sample_cuda(const at::Tensor& logits_in, const at::Tensor& temperature,
                                               const at::Tensor& top_k, const at::Tensor& top_p,
                                               const at::Tensor& seed, const at::Tensor& offset) {
  const auto [logits, kind, device] = cuda_logit_rows(logits_in);
  const int64_t rows = logits.size(0);
  c10::cuda::CUDAGuard guard(device);
  const ParamTensors params = sampling_params(temperature, top_k, top_p, seed, offset, rows, device);
  at::Tensor ids = logits.new_empty({rows}, logits.options().dtype(at::kLong));
  at::Tensor logprob = logits.new_empty({rows}, logits.options().dtype(at::kFloat));
  check_launch(cuda::launch_sample(logits.data_ptr(), kind, logits.stride(0), rows, logits.size(1), params.view(),
                                   ids.data_ptr<int64_t>(), logprob.data_ptr<float>(), current_stream()),
               "sample");
  // The kernel gives -1 for a row that is not a distribution; refuse the call naming it.
  if (rows > 0 && ids.min().item<int64_t>() < 0) fail_on_unusable_row(logits, "logits");
  return {ids, logprob};
}

at::Tensor sampling_probs_cuda(const at::Tensor& logits_in, const at::Tensor& temperature, const at::Tensor& top_k,
                               const at::Tensor& top_p) {
  const auto [logits, kind, device] = cuda_logit_rows(logits_in);
  const int64_t rows = logits.size(0);
  c10::cuda::CUDAGuard guard(device);
  const at::Tensor no_seed = at::zeros({rows}, temperature.options().dtype(at::kLong));  // the filter draws nothing
  const ParamTensors params = sampling_params(temperature, top_k, top_p, no_seed, no_seed, rows, device);
  at::Tensor probs = logits.new_empty({rows, logits.size(1)}, logits.options().dtype(at::kFloat));
  at::Tensor status = logits.new_empty({rows}, logits.options().dtype(at::kLong));
  check_launch(cuda::launch_sampling_probs(logits.data_ptr(), kind, logits.stride(0), rows, logits.size(1),
                                           params.view(), probs.data_ptr<float>(), status.data_ptr<int64_t>(),
                                           current_stream()),
               "sampling_probs");
  if (rows > 0 && status.min().item<int64_t>() < 0) fail_on_unusable_row(logits, "logits");
  return probs;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> speculative_verify_cuda(
    const at::Tensor& target_in, const at::Tensor& draft_token_ids, const at::Tensor& cu_num_draft,
    const std::optional<at::Tensor>& draft_probs_in, const at::Tensor& temperature, const at::Tensor& top_k,
    const at::Tensor& top_p, const at::Tensor& seed, const at::Tensor& offset) {
  check_sampling_logits(target_in, "target_logits", "[sum(k_b + 1), V]");
  const auto kind = checked_float_type(target_in, "target_logits");
  const auto device = target_in.device();
  TORCH_CHECK(device.is_cuda(), "target_logits must be a CUDA tensor, got ", device);
  const int64_t vocab = target_in.size(1);
  // The one host read of the offsets (see the file comment); validates them and the ids as well.
  const at::Tensor cu_host = check_verify_drafts(target_in, draft_token_ids, cu_num_draft);
  const int64_t num_draft = draft_token_ids.size(0), batch = cu_host.numel() - 1;
  int64_t max_k = 0;
  const int64_t* cu = cu_host.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b) max_k = std::max(max_k, cu[b + 1] - cu[b]);
  const at::Tensor target = target_in.stride(1) == 1 ? target_in : target_in.contiguous();

  c10::cuda::CUDAGuard guard(device);
  at::Tensor draft_probs;
  if (draft_probs_in.has_value()) {
    check_on_device(*draft_probs_in, "draft_probs", device);
    check_draft_probs(*draft_probs_in, num_draft, vocab);
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
                        draft_probs.defined() ? checked_float_type(draft_probs, "draft_probs") : FloatType::kFloat32,
                        draft_probs.defined() ? draft_probs.stride(0) : 0,
                        batch,
                        target.size(0),
                        vocab};
  const cuda::VerifyOutputs out{out_ids.data_ptr<int64_t>(), max_k + 1, num_accepted.data_ptr<int64_t>(),
                                target_logprob.data_ptr<float>()};
  check_launch(cuda::launch_speculative_verify(in, params.view(), workspace.data_ptr(), out, current_stream()),
               "speculative_verify");
  // A request with a row that is not a distribution comes back with num_accepted -1: refuse the call.
  if (batch > 0 && num_accepted.min().item<int64_t>() < 0) fail_on_unusable_row(target, "target_logits");
  return {out_ids, num_accepted, target_logprob};
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("sample", &a1::sample_cuda);
  m.impl("sampling_probs", &a1::sampling_probs_cuda);
  m.impl("speculative_verify", &a1::speculative_verify_cuda);
}
