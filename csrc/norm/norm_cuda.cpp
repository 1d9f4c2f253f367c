// CUDA glue of the RMSNorm ops: the checks shared with the CPU glue (norm/norm_checks.h), device
// guard, current stream, then the torch-free launchers of csrc/norm/rms_norm.cu.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/cuda_glue.h"
#include "norm/norm_checks.h"
#include "norm/norm_cuda.h"

namespace a1 {
namespace {

void check_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cuda(), "x must be a CUDA tensor, got ", x.device());
}

at::Tensor rms_norm_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  check_norm_inputs(x_in, weight_in, eps);
  check_cuda(x_in);
  const auto kind = checked_float_type(x_in, "x");
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1)}, x.options());  // contiguous, as register_fake says
  const cuda::NormRowsArgs args{x.data_ptr(), x.stride(0), nullptr, 0, weight.data_ptr(), out.data_ptr(),
                                out.stride(0), kind, x.size(0), x.size(1), static_cast<float>(eps)};
  check_launch(cuda::launch_rms_norm(args, current_stream()), "rms_norm");
  return out;
}

void fused_add_rms_norm_cuda(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight_in,
                             double eps) {
  check_norm_inputs(x, weight_in, eps);
  check_cuda(x);
  check_fused_residual(x, residual);
  const auto kind = checked_float_type(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor weight = weight_in.contiguous();
  const cuda::NormRowsArgs args{x.data_ptr(), x.stride(0), residual.data_ptr(), residual.stride(0), weight.data_ptr(),
                                x.data_ptr(), x.stride(0), kind, x.size(0), x.size(1), static_cast<float>(eps)};
  check_launch(cuda::launch_fused_add_rms_norm(args, current_stream()), "fused_add_rms_norm");
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("rms_norm", &a1::rms_norm_cuda);
  m.impl("fused_add_rms_norm", &a1::fused_add_rms_norm_cuda);
}
