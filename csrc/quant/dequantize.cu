// a1::dequantize on CUDA: GGUF blocks -> float32 rows, bit-exact with gguf.quants (and the CPU op)
// because every element goes through quant_formats.h's dequantize_element, compiled here with
// -fmad=false (cmake/cuda.cmake) so no product is fused into the following add. A CTA walks whole
// output rows (grid-stride over rows): consecutive threads write consecutive floats (coalesced) and
// read the few bytes of the same block, and the row's source is looked up once per row.
#include "common/cuda_common.cuh"
#include "quant/quant_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kDequantizeThreads = 256;
constexpr int kDequantizeCtasPerSm = 16;

template <quant::Format F>
__global__ void __launch_bounds__(kDequantizeThreads)
    dequantize_kernel(const uint8_t* __restrict__ weight, int64_t row_bytes, const int64_t* __restrict__ rows,
                      int64_t row_begin, int64_t count, int64_t in_features, float* __restrict__ out) {
  constexpr int64_t block_size = quant::format_info(F).block_size, block_bytes = quant::format_info(F).block_bytes;
  for (int64_t r = blockIdx.x; r < count; r += gridDim.x) {
    const int64_t source = rows != nullptr ? rows[r] : row_begin + r;
    const uint8_t* row = weight + source * row_bytes;
    float* dst = out + r * in_features;
    for (int64_t c = threadIdx.x; c < in_features; c += blockDim.x)
      dst[c] = quant::dequantize_element(F, row + (c / block_size) * block_bytes, static_cast<int>(c % block_size));
  }
}

template <quant::Format F>
void launch(const QuantWeight& w, const int64_t* rows, int64_t row_begin, int64_t count, float* out,
            cudaStream_t stream) {
  // Whole warps, no more threads than a row has weights (K is a multiple of 32).
  const int64_t threads = w.in_features < kDequantizeThreads ? w.in_features : kDequantizeThreads;
  const int64_t max_ctas = static_cast<int64_t>(multiprocessor_count()) * kDequantizeCtasPerSm;
  const int64_t ctas = count < max_ctas ? count : max_ctas;
  dequantize_kernel<F><<<static_cast<unsigned>(ctas), static_cast<unsigned>(threads), 0, stream>>>(
      w.data, w.row_bytes, rows, row_begin, count, w.in_features, out);
}

}  // namespace

LaunchStatus launch_dequantize(const QuantWeight& w, const int64_t* rows, int64_t row_begin, int64_t count,
                               float* out, cudaStream_t stream) {
  if (count == 0 || w.in_features == 0) return 0;
  quant::visit_format(w.format, [&](auto format) { launch<decltype(format)::value>(w, rows, row_begin, count, out, stream); });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
