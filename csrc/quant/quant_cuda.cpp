// CUDA glue of the quantized ops: the checks shared with the CPU glue (quant/quant_checks.h, same
// messages), device guard, current stream, then the torch-free launchers of dequantize.cu,
// round_activations.cu and quant_gemv.cu. quant_linear rounds the token rows to 8 bits per group
// (as the CPU op does), then runs the decode kernel up to kQuantGemvMaxTokens token rows; more
// rows (prefill, scoring) dequantize the weight into a float32 scratch, a bounded number of rows at
// a time, and multiply it with cuBLAS through at::mm (this toolkit has no cuBLAS headers, and
// cuBLAS's fp32 GEMM beats a hand-written one once there are enough rows to reuse each weight).
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>

#include "common/cuda_glue.h"
#include "quant/quant_checks.h"
#include "quant/quant_cuda.h"
#include "quant/quant_linear_cuda.h"

namespace a1 {
namespace {

// Floats of dequantized weight the GEMM path holds at once (128 MiB): a 152k x 896 LM head is
// multiplied in a few pieces rather than widened whole.
constexpr int64_t kScratchFloats = int64_t{1} << 25;

bool aligned16(const at::Tensor& t) { return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0; }

cuda::QuantWeight quant_weight(const at::Tensor& weight, quant::Format format) {
  return {weight.data_ptr<uint8_t>(), weight.size(1) * weight.size(2), weight.size(0), quant_in_features(weight, format),
          format};
}

at::Tensor dequantize_cuda(const at::Tensor& weight, const std::optional<at::Tensor>& rows_in) {
  const quant::Format format = check_dequantize_inputs(weight, rows_in);
  check_not_quant_panels(weight, "weight", "the CUDA kernel");
  TORCH_CHECK(weight.device().is_cuda(), "weight must be a CUDA tensor for the CUDA kernel, got ", weight.device());
  c10::cuda::CUDAGuard guard(weight.device());
  const at::Tensor rows = rows_in.has_value() ? to_device(*rows_in, "rows", weight.device(), at::kLong) : at::Tensor();
  const int64_t count = rows_in.has_value() ? rows.size(0) : weight.size(0);
  at::Tensor out = at::empty({count, quant_in_features(weight, format)}, weight.options().dtype(at::kFloat));
  check_launch(cuda::launch_dequantize(quant_weight(weight, format), rows.defined() ? rows.data_ptr<int64_t>() : nullptr,
                                       0, count, out.data_ptr<float>(), current_stream()),
               "dequantize");
  return out;
}

// x @ W^T (+ bias) for many token rows: W dequantized into a float32 scratch of at most
// kScratchFloats, one slice of output columns at a time.
at::Tensor quant_matmul(const at::Tensor& x, const at::Tensor& weight, quant::Format format,
                        const std::optional<at::Tensor>& bias) {
  const cuda::QuantWeight w = quant_weight(weight, format);
  const int64_t N = w.rows, K = w.in_features;
  const int64_t slice = std::clamp<int64_t>(kScratchFloats / std::max<int64_t>(K, 1), 1, N);
  at::Tensor scratch = at::empty({slice, K}, x.options());
  if (slice == N) {
    check_launch(cuda::launch_dequantize(w, nullptr, 0, N, scratch.data_ptr<float>(), current_stream()), "quant_linear");
    return bias.has_value() ? at::addmm(*bias, x, scratch.t()) : at::mm(x, scratch.t());
  }
  at::Tensor out = at::empty({x.size(0), N}, x.options());
  for (int64_t n0 = 0; n0 < N; n0 += slice) {
    const int64_t n = std::min(slice, N - n0);
    const at::Tensor part = scratch.narrow(0, 0, n);
    check_launch(cuda::launch_dequantize(w, nullptr, n0, n, part.data_ptr<float>(), current_stream()), "quant_linear");
    out.narrow(1, n0, n).copy_(bias.has_value() ? at::addmm(bias->narrow(0, n0, n), x, part.t()) : at::mm(x, part.t()));
  }
  return out;
}

}  // namespace

at::Tensor quant_linear_cuda(const at::Tensor& x_in, const at::Tensor& weight_in, const std::optional<at::Tensor>& bias) {
  const quant::Format format = check_quant_linear_inputs(x_in, weight_in, bias);
  check_not_quant_panels(weight_in, "weight", "the CUDA kernel");
  TORCH_CHECK(x_in.device().is_cuda(), "x must be a CUDA tensor for the CUDA kernel, got ", x_in.device());
  c10::cuda::CUDAGuard guard(x_in.device());
  const int64_t T = x_in.size(0), N = weight_in.size(0), K = x_in.size(1);
  if (T == 0 || N == 0) return at::empty({T, N}, x_in.options());
  // Both paths multiply the 8-bit rounded activations (quant/quant_activations.h), held in a fresh
  // contiguous tensor: 16-byte aligned rows, as the decode kernel's loads need.
  const at::Tensor x_rows = x_in.stride(1) == 1 ? x_in : x_in.contiguous();
  const at::Tensor x = at::empty({T, K}, x_in.options());
  check_launch(cuda::launch_round_activations(x_rows.data_ptr<float>(), x_rows.stride(0), T, K, x.data_ptr<float>(),
                                              current_stream()),
               "quant_linear");
  if (T > cuda::kQuantGemvMaxTokens) return quant_matmul(x, weight_in, format, bias);
  // The decode kernel's 16-byte loads: a misaligned view of the blocks is copied (a fresh tensor is aligned).
  const at::Tensor weight = aligned16(weight_in) ? weight_in : weight_in.clone();
  const at::Tensor bias_contiguous = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({T, N}, x.options());
  check_launch(cuda::launch_quant_gemv(quant_weight(weight, format), x.data_ptr<float>(), x.stride(0), T,
                                       bias_contiguous.defined() ? bias_contiguous.data_ptr<float>() : nullptr,
                                       out.data_ptr<float>(), current_stream()),
               "quant_linear");
  return out;
}

}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("dequantize", &a1::dequantize_cuda);
  m.impl("quant_linear", &a1::quant_linear_cuda);
}
