// CUDA glue of a1::linear: the checks shared with the CPU glue, then cuBLAS (at::mm / at::addmm for
// [N, K] weights, a batched product for panels), whose GEMV and GEMM kernels already stream the
// weights at the GPU's bandwidth.
#include <torch/library.h>

#include "common/cuda_glue.h"
#include "linear/linear_checks.h"

namespace a1 {
namespace {

at::Tensor linear_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_linear_inputs(x, weight, bias);
  TORCH_CHECK(x.device().is_cuda(), "x must be a CUDA tensor, got ", x.device());
  c10::cuda::CUDAGuard guard(x.device());
  return linear_by_library(x, weight, bias);
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) { m.impl("linear", &a1::linear_cuda); }
