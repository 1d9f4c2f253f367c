// Launchers of the CUDA kernels of the quantized ops (csrc/quant/dequantize.cu, round_activations.cu,
// quant_gemv.cu). Torch-free: the glue in quant_cuda.cpp passes raw pointers, the format and a
// stream. Same semantics as the CPU kernels (quant_cpu.cpp): dequantize is exact (gguf.quants'
// float32 values, bit for bit); quant_linear multiplies the same 8-bit rounded activations and sums
// in fp32 in another order than F.linear on the dequantized weight.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"
#include "quant/quant_formats.h"

namespace a1::cuda {

// A quantized weight W [N, K] in GGUF blocks (quant/quant_formats.h): N rows of row_bytes bytes,
// contiguous. The decode kernel reads block fields with loads as wide as the format's block size
// keeps aligned (2, 4 or 16 bytes), so for launch_quant_gemv `data` must be 16-byte aligned (it
// refuses it otherwise with cudaErrorInvalidValue; the glue copies a misaligned view).
struct QuantWeight {
  const uint8_t* data;
  int64_t row_bytes;  // K / block_size * block_bytes
  int64_t rows;       // N
  int64_t in_features;  // K
  quant::Format format;
};

// Token rows up to which quant_linear runs the decode kernel (each block decoded once in registers
// and multiplied into every token row); more rows dequantize the weight into a float32 scratch and
// multiply with cuBLAS. The decode kernel does one FMA per weight and token row on top of the
// decoding, the GEMM path writes and reads 8 bytes of scratch per weight (vs 0.56 to 1.06 bytes of
// blocks): up to 16 rows the first should cost less. Reasoned, not yet measured on a GPU:
// bench_cuda_kernels.py times T = 16 and 17 (both paths) to check it.
constexpr int64_t kQuantGemvMaxTokens = 16;

// out[r, :] = W[row(r), :] as float32, r in [0, count), out rows K floats apart; row(r) is
// rows[r] (int64, on the device, each in [0, N): the glue checks) or row_begin + r when rows is null.
LaunchStatus launch_dequantize(const QuantWeight& weight, const int64_t* rows, int64_t row_begin, int64_t count,
                               float* out, cudaStream_t stream);

// x [T, K] (rows x_stride floats apart, each contiguous; K a multiple of 32) rounded to 8 bits per
// 32-value group into out [T, K] contiguous: the floats q * d of quant/quant_activations.h, bit for
// bit (a group holding inf or NaN: NaN). quant_linear multiplies these on both of its paths.
LaunchStatus launch_round_activations(const float* x, int64_t x_stride, int64_t tokens, int64_t in_features,
                                      float* out, cudaStream_t stream);

// out[t, n] = sum_k x[t, k] W[n, k] (+ bias[n]) for t < tokens <= kQuantGemvMaxTokens: x rows
// x_stride floats apart (a multiple of 4) and 16-byte aligned, bias [N] or null, out [tokens, N]
// contiguous. A group of lanes of a warp owns a weight row: each lane decodes 32-weight groups of
// it in registers, the group's sums meet by warp shuffles.
LaunchStatus launch_quant_gemv(const QuantWeight& weight, const float* x, int64_t x_stride, int64_t tokens,
                               const float* bias, float* out, cudaStream_t stream);

}  // namespace a1::cuda
