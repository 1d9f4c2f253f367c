// CUDA glue of silu_and_mul and rotary_embedding: the checks shared with the CPU glue
// (pointwise/pointwise_checks.h), device guard, current stream, then the torch-free launchers of
// csrc/pointwise/pointwise.cu.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/cuda_glue.h"
#include "pointwise/pointwise_checks.h"
#include "pointwise/pointwise_cuda.h"

namespace a1 {
namespace {

void check_cuda(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cuda(), "x must be a CUDA tensor, got ", x.device());
}

at::Tensor silu_and_mul_cuda(const at::Tensor& x_in) {
  check_silu_and_mul_input(x_in);
  check_cuda(x_in);
  const auto kind = checked_float_type(x_in, "x");
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const int64_t num_rows = x.size(0), width = x.size(1) / 2;
  at::Tensor out = at::empty({num_rows, width}, x.options());  // contiguous, as register_fake says
  check_launch(cuda::launch_silu_and_mul(x.data_ptr(), x.stride(0), out.data_ptr(), out.stride(0), kind, num_rows,
                                         width, current_stream()),
               "silu_and_mul");
  return out;
}

void rotary_embedding_cuda(const at::Tensor& x, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  check_rotary_inputs(x, cos_in, sin_in);
  check_cuda(x);
  const auto kind = checked_float_type(x, "x");
  c10::cuda::CUDAGuard guard(x.device());
  const auto [cos, sin] = rotary_tables(cos_in, sin_in);
  const cuda::RotaryArgs args{x.data_ptr(),  x.stride(0), x.stride(1), cos.data_ptr(), sin.data_ptr(),
                              cos.stride(0), kind,        x.size(0),   x.size(1),      x.size(2)};
  check_launch(cuda::launch_rotary_embedding(args, current_stream()), "rotary_embedding");
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("silu_and_mul", &a1::silu_and_mul_cuda);
  m.impl("rotary_embedding", &a1::rotary_embedding_cuda);
}
