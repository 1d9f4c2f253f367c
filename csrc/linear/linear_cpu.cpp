// CPU glue of a1::linear: fp32 inputs of at most kSkinnyMaxTokens rows (decode steps, short
// verification and scoring batches) run the weight-streaming kernel of linear/skinny_gemm_kernels.h
// on at::parallel_for workers; bf16/fp16 and longer inputs (prefill) go to BLAS through at::mm,
// which wins once each weight vector is reused by enough token rows.
#include <ATen/Parallel.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include "linear/linear_checks.h"
#include "linear/linear_cpu.h"
#include "linear/skinny_gemm_kernels.h"

namespace a1 {
namespace {

// The crossover with BLAS on the benchmark machine (benchmarks/bench_linear.py): above ~32 token
// rows a packed sgemm's cache blocking beats streaming the weights once.
constexpr int64_t kSkinnyMaxTokens = 32;
// Below this many weight elements per thread a fork/join costs more than it saves.
constexpr int64_t kMinWeightsPerThread = 1 << 16;

bool use_skinny_kernel(const at::Tensor& x, const at::Tensor& weight) {
  return x.scalar_type() == at::kFloat && x.size(0) >= 1 && x.size(0) <= kSkinnyMaxTokens && x.size(1) >= 1 &&
         weight.size(0) >= 1 && (x.stride(1) == 1 || x.size(1) == 1) && (weight.stride(1) == 1 || weight.size(1) == 1);
}

}  // namespace

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_linear_inputs(x, weight, bias);
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor for the CPU kernel, got ", x.device());
  if (!use_skinny_kernel(x, weight)) {
    return bias.has_value() ? at::addmm(*bias, x, weight.t()) : at::mm(x, weight.t());
  }
  const int64_t tokens = x.size(0), out_features = weight.size(0), in_features = x.size(1);
  at::Tensor out = at::empty({tokens, out_features}, x.options());
  const at::Tensor bias_contiguous = bias.has_value() ? bias->contiguous() : at::Tensor();
  const linear::SkinnyGemmParams params{x.data_ptr<float>(),
                                        x.stride(0),
                                        weight.data_ptr<float>(),
                                        weight.stride(0),
                                        bias.has_value() ? bias_contiguous.data_ptr<float>() : nullptr,
                                        out.data_ptr<float>(),
                                        tokens,
                                        out_features,
                                        in_features};
  const linear::SkinnyGemmRowsFn rows_fn = linear::select_skinny_gemm_rows(simd::select_isa());
  // Units of kRowAlignment rows, so the thread boundaries fall on whole register blocks.
  const int64_t units = (out_features + linear::kRowAlignment - 1) / linear::kRowAlignment;
  const int64_t grain = std::max<int64_t>(1, kMinWeightsPerThread / (linear::kRowAlignment * in_features));
  const auto run_units = [&](int64_t begin, int64_t end) {
    rows_fn(params, begin * linear::kRowAlignment, std::min(out_features, end * linear::kRowAlignment));
  };
  if (units <= grain) {
    run_units(0, units);
  } else {
    at::parallel_for(0, units, grain, run_units);
  }
  return out;
}

TORCH_LIBRARY_IMPL(a1, CPU, m) { m.impl("linear", &linear_cpu); }

}  // namespace a1
