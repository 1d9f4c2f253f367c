// CPU glue of a1::linear. fp32 weights in panels [N / 16, K, 16] run the packed kernel of
// linear/packed_gemm_kernels.h for any number of token rows (level with BLAS or ahead of it up to a
// few hundred rows; from ~512 rows MKL's blocking is 10-20% faster, benchmarks/RESULTS.md §1, which
// a second [N, K] copy of the weights would not be worth); fp32 [N, K] weights with at most
// kSkinnyMaxTokens rows (decode steps, short verification and scoring batches) run the
// weight-streaming kernel of linear/skinny_gemm_kernels.h, bf16/fp16 ones with few rows that of
// linear/half_gemm_kernels.h; longer inputs on [N, K] go to BLAS (oneDNN for bf16/fp16).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <memory>

#include "common/parallel_rows.h"
#include "common/checks.h"
#include "linear/half_gemm_kernels.h"
#include "linear/linear_checks.h"
#include "linear/linear_cpu.h"
#include "linear/packed_gemm_kernels.h"
#include "linear/skinny_gemm_kernels.h"

namespace a1 {
namespace {

// The crossover with BLAS on the benchmark machine (benchmarks/bench_linear.py): above ~32 token
// rows a packed sgemm's cache blocking beats streaming [N, K] weights once.
constexpr int64_t kSkinnyMaxTokens = 32;
// Up to these many rows the 16-bit kernel beats torch's matmul on the benchmark machine (all
// SmolLM2 weights, 2 threads): bf16 there runs on AMX tiles, level at 12 rows, 2x faster at 32
// (25 vs 54 ms); fp16 has no AMX there, a1 33 vs 40 ms at 16 rows, 63 vs 56 at 32.
constexpr int64_t kBf16MaxTokens = 8, kFp16MaxTokens = 16;
// Token rows per pass of the packed kernel over the weights.
constexpr int64_t kPackedTokenChunk = 64;

bool has_unit_inner_strides(const at::Tensor& x, const at::Tensor& weight) {
  return x.size(0) >= 1 && x.size(1) >= 1 && (x.stride(1) == 1 || x.size(1) == 1) &&
         (weight.stride(-1) == 1 || weight.size(-1) == 1) && linear_out_features(weight) >= 1;
}

bool use_skinny_kernel(const at::Tensor& x, const at::Tensor& weight) {
  return x.scalar_type() == at::kFloat && !is_weight_panels(weight) && x.size(0) <= kSkinnyMaxTokens &&
         has_unit_inner_strides(x, weight);
}

bool use_half_kernel(const at::Tensor& x, const at::Tensor& weight) {
  const int64_t max_tokens =
      x.scalar_type() == at::kBFloat16 ? kBf16MaxTokens : x.scalar_type() == at::kHalf ? kFp16MaxTokens : 0;
  return x.size(0) <= max_tokens && !is_weight_panels(weight) && has_unit_inner_strides(x, weight);
}

bool use_packed_kernel(const at::Tensor& x, const at::Tensor& weight) {
  return x.scalar_type() == at::kFloat && is_weight_panels(weight) && has_unit_inner_strides(x, weight);
}

at::Tensor skinny_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor out) {
  const int64_t out_features = weight.size(0), in_features = x.size(1);
  const linear::SkinnyGemmParams params{x.data_ptr<float>(), x.stride(0), weight.data_ptr<float>(), weight.stride(0),
                                        bias.defined() ? bias.data_ptr<float>() : nullptr, out.data_ptr<float>(),
                                        x.size(0), out_features, in_features};
  const linear::SkinnyGemmRowsFn rows_fn = linear::select_skinny_gemm_rows(simd::select_isa());
  // Units of kRowAlignment rows, so the thread boundaries fall on whole register blocks.
  const int64_t units = (out_features + linear::kRowAlignment - 1) / linear::kRowAlignment;
  for_each_weight_range(units, linear::kRowAlignment * in_features, [&](int64_t begin, int64_t end) {
    rows_fn(params, begin * linear::kRowAlignment, std::min(out_features, end * linear::kRowAlignment));
  });
  return out;
}

at::Tensor half_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, at::Tensor out) {
  const int64_t out_features = weight.size(0), in_features = x.size(1), tokens = x.size(0);
  const linear::HalfGemmKernel kernel = linear::select_half_gemm(simd::select_isa());
  const FloatType type = float_type_of(weight);
  const std::unique_ptr<float[]> x_rows(new float[tokens * in_features]);  // every element is written
  kernel.pack_fn(x.data_ptr(), float_type_of(x), x.stride(0), tokens, in_features, type, x_rows.get());
  const linear::HalfGemmParams params{x_rows.get(),
                                      static_cast<const uint16_t*>(weight.data_ptr()),
                                      weight.stride(0),
                                      bias.defined() ? static_cast<const uint16_t*>(bias.data_ptr()) : nullptr,
                                      out.data_ptr(),
                                      tokens,
                                      out_features,
                                      in_features,
                                      type,
                                      float_type_of(out)};
  const int64_t units = (out_features + linear::kHalfRowAlignment - 1) / linear::kHalfRowAlignment;
  for_each_weight_range(units, linear::kHalfRowAlignment * in_features, [&](int64_t begin, int64_t end) {
    kernel.rows_fn(params, begin * linear::kHalfRowAlignment, std::min(out_features, end * linear::kHalfRowAlignment));
  });
  return out;
}

at::Tensor packed_linear(const at::Tensor& x, const at::Tensor& panels, const at::Tensor& bias, at::Tensor out) {
  const int64_t num_panels = panels.size(0), in_features = x.size(1), out_features = linear_out_features(panels);
  const linear::PackedGemmKernel kernel = linear::select_packed_gemm(simd::select_isa());
  // Units of kPanelAlignment panels, so the thread boundaries fall on whole register blocks.
  const int64_t units = (num_panels + linear::kPanelAlignment - 1) / linear::kPanelAlignment;
  const int64_t chunk_rows = std::min(kPackedTokenChunk, x.size(0));
  const std::unique_ptr<float[]> x_tiles(new float[chunk_rows * in_features]);  // every element is packed
  // Long inputs (prefill) in chunks of token rows, so a chunk's rows and outputs stay in L2 while
  // the weights pass by (1024 rows: 227 -> ~300 GFLOP/s).
  for (int64_t t0 = 0; t0 < x.size(0); t0 += kPackedTokenChunk) {
    const int64_t rows = std::min(kPackedTokenChunk, x.size(0) - t0);
    kernel.pack_fn(x.data_ptr<float>() + t0 * x.stride(0), x.stride(0), rows, in_features, x_tiles.get());
    const linear::PackedGemmParams params{x_tiles.get(),
                                          panels.data_ptr<float>(),
                                          bias.defined() ? bias.data_ptr<float>() : nullptr,
                                          out.data_ptr<float>() + t0 * out_features,
                                          rows,
                                          out_features,
                                          in_features};
    for_each_weight_range(units, linear::kPanelAlignment * linear::kPanelWidth * in_features, [&](int64_t begin, int64_t end) {
      kernel.panels_fn(params, begin * linear::kPanelAlignment, std::min(num_panels, end * linear::kPanelAlignment));
    });
  }
  return out;
}

}  // namespace

at::Tensor linear_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias) {
  check_linear_inputs(x, weight, bias);
  TORCH_CHECK(x.device().is_cpu(), "x must be a CPU tensor for the CPU kernel, got ", x.device());
  const bool packed = use_packed_kernel(x, weight), half = use_half_kernel(x, weight);
  if (!packed && !half && !use_skinny_kernel(x, weight)) return linear_by_library(x, weight, bias);
  at::Tensor out = at::empty({x.size(0), linear_out_features(weight)}, x.options());
  const at::Tensor bias_contiguous = bias.has_value() ? bias->contiguous() : at::Tensor();
  if (half) return half_linear(x, weight, bias_contiguous, out);
  return packed ? packed_linear(x, weight, bias_contiguous, out) : skinny_linear(x, weight, bias_contiguous, out);
}

at::Tensor linear_cpu_float_out(const at::Tensor& x, const at::Tensor& weight) {
  check_dim(x, "x", 2, "[T, K]");
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.device().is_cpu(), "x must be a float32 CPU tensor, got ",
              x.scalar_type(), " on ", x.device());
  if (weight.scalar_type() == at::kFloat) return linear_cpu(x, weight, std::nullopt);
  check_linear_weight_layout(weight, "weight");
  check_size(weight, "weight", 1, x.size(1), "x.size(1) (K)");
  // Up to 32 rows: widening the weight to fp32 first would read it twice and write it once.
  if (is_weight_panels(weight) || x.size(0) > kSkinnyMaxTokens || !has_unit_inner_strides(x, weight))
    return linear_cpu(x, weight.to(at::kFloat), std::nullopt);
  return half_linear(x, weight, at::Tensor(), at::empty({x.size(0), weight.size(0)}, x.options()));
}

TORCH_LIBRARY_IMPL(a1, CPU, m) { m.impl("linear", &linear_cpu); }

}  // namespace a1
