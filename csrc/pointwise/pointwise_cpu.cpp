// CPU glue of a1::silu_and_mul and a1::rotary_embedding: argument checks that name the argument,
// then the torch-free kernels of pointwise/pointwise_kernels.h, inline for a decode step's few
// rows and over at::parallel_for workers for prefill-sized inputs (common/parallel_rows.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/parallel_rows.h"
#include "pointwise/pointwise_checks.h"
#include "pointwise/pointwise_kernels.h"

namespace a1 {
namespace {

static_assert(2 * pointwise::kMaxHalfDim == kMaxRotaryHeadDim, "the kernel's buffers must hold the largest head_dim");

void check_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor for the CPU kernel, got ", x.device());
}

at::Tensor silu_and_mul_cpu(const at::Tensor& x_in) {
  check_silu_and_mul_input(x_in);
  check_cpu(x_in);
  const int64_t num_rows = x_in.size(0), width = x_in.size(1) / 2;
  at::Tensor out = at::empty({num_rows, width}, x_in.options());  // contiguous, as register_fake says
  if (num_rows == 0 || width == 0) return out;
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const pointwise::SiluAndMulRows rows{x.data_ptr(), x.stride(0), out.data_ptr(), out.stride(0), float_type_of(x),
                                       width};
  for_each_row_range(num_rows, width, [&](int64_t begin, int64_t end) { pointwise::silu_and_mul_rows(rows, begin, end); });
  return out;
}

void rotary_embedding_cpu(const at::Tensor& x, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  check_rotary_inputs(x, cos_in, sin_in);
  check_cpu(x);
  const int64_t num_tokens = x.size(0), num_heads = x.size(1), head_dim = x.size(2);
  if (num_tokens == 0 || num_heads == 0 || head_dim == 0) return;
  const auto [cos, sin] = rotary_tables(cos_in, sin_in);
  const pointwise::RotaryRows rows{x.data_ptr(),  x.stride(0),      x.stride(1), cos.data_ptr(),
                                   sin.data_ptr(), cos.stride(0),    float_type_of(x), num_heads,
                                   static_cast<int>(head_dim)};
  for_each_row_range(num_tokens, num_heads * head_dim,
           [&](int64_t begin, int64_t end) { pointwise::rotate_tokens(rows, begin, end); });
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("silu_and_mul", &silu_and_mul_cpu);
  m.impl("rotary_embedding", &rotary_embedding_cpu);
}

}  // namespace a1
