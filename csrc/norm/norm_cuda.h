// Launchers of the RMSNorm kernels (csrc/norm/rms_norm.cu). Torch-free: the glue in norm_cuda.cpp
// passes raw pointers, row strides, the dtype tag and a stream. Same semantics as the CPU kernels
// (norm/rms_norm_kernels.h): fp32 math, the normalised value rounded to the dtype before the
// weight multiply, as transformers' LlamaRMSNorm does.
#pragma once
#include <cstdint>

#include "common/cuda_dtype.h"

namespace a1::cuda {

// Rows of [num_rows, hidden] tensors whose hidden dim is contiguous; strides are in elements.
struct NormRowsArgs {
  const void* x;         // rms_norm's input; fused_add_rms_norm reads and overwrites it (== out)
  int64_t x_row_stride;
  void* residual;        // fused_add_rms_norm only: residual += x, in place
  int64_t residual_row_stride;
  const void* weight;    // [hidden], contiguous
  void* out;
  int64_t out_row_stride;
  FloatType kind;        // of every tensor above
  int64_t num_rows, hidden;
  float eps;
};

// out = weight * to_dtype(x * rsqrt(mean(x^2) + eps)), one CTA per row.
LaunchStatus launch_rms_norm(const NormRowsArgs& args, cudaStream_t stream);

// residual += x (rounded to the dtype); then x = rms_norm(residual). args.out must equal args.x.
LaunchStatus launch_fused_add_rms_norm(const NormRowsArgs& args, cudaStream_t stream);

}  // namespace a1::cuda
