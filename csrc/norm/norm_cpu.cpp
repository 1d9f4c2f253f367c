// CPU glue of a1::rms_norm and a1::fused_add_rms_norm: argument checks that name the argument,
// then the torch-free row kernels of norm/rms_norm_kernels.h, inline for a decode step's few rows
// and over at::parallel_for workers for prefill-sized inputs (common/parallel_rows.h).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "common/parallel_rows.h"
#include "norm/norm_checks.h"
#include "norm/rms_norm_kernels.h"

namespace a1 {
namespace {

void check_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor for the CPU kernel, got ", x.device());
}

at::Tensor rms_norm_cpu(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  check_norm_inputs(x_in, weight_in, eps);
  check_cpu(x_in);
  const int64_t num_rows = x_in.size(0), hidden = x_in.size(1);
  at::Tensor out = at::empty({num_rows, hidden}, x_in.options());  // contiguous, as register_fake says
  if (num_rows == 0 || hidden == 0) return out;
  const at::Tensor x = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const at::Tensor weight = weight_in.contiguous();
  const norm::NormRows rows{x.data_ptr(), x.stride(0), nullptr, 0, weight.data_ptr(), out.data_ptr(),
                            out.stride(0), float_type_of(x), hidden, static_cast<float>(eps)};
  for_each_row_range(num_rows, hidden, [&](int64_t begin, int64_t end) { norm::rms_norm_rows(rows, begin, end); });
  return out;
}

void fused_add_rms_norm_cpu(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight_in, double eps) {
  check_norm_inputs(x, weight_in, eps);
  check_cpu(x);
  check_fused_residual(x, residual);
  const int64_t num_rows = x.size(0), hidden = x.size(1);
  if (num_rows == 0 || hidden == 0) return;
  const at::Tensor weight = weight_in.contiguous();
  const norm::NormRows rows{x.data_ptr(), x.stride(0), residual.data_ptr(), residual.stride(0), weight.data_ptr(),
                            x.data_ptr(), x.stride(0), float_type_of(x), hidden, static_cast<float>(eps)};
  for_each_row_range(num_rows, hidden,
                     [&](int64_t begin, int64_t end) { norm::fused_add_rms_norm_rows(rows, begin, end); });
}

}  // namespace

TORCH_LIBRARY_IMPL(a1, CPU, m) {
  m.impl("rms_norm", &rms_norm_cpu);
  m.impl("fused_add_rms_norm", &fused_add_rms_norm_cpu);
}

}  // namespace a1
