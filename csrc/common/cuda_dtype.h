// Torch-free description of the tensors a CUDA launcher receives: an element-type tag and the
// stream type. The torch glue (*_cuda.cpp) maps at::ScalarType onto a1::FloatType
// (common/float_type.h, the CPU kernels' tag too); the .cu files map it onto float / __half /
// __nv_bfloat16 with A1_DISPATCH_FLOAT (common/cuda_common.cuh). Keeping this header free of torch
// and of the CUDA headers lets both sides include it cheaply.
#pragma once
#include <cstdint>

#include "common/float_type.h"

// The CUDA runtime declares exactly this typedef; repeating it keeps launcher headers includable
// from host code that has not pulled in cuda_runtime_api.h.
typedef struct CUstream_st* cudaStream_t;

namespace a1::cuda {

// Launchers return 0 on success or the cudaError_t value of the failed launch; the glue turns a
// non-zero code into a TORCH_CHECK failure with the runtime's message (a1::cuda::error_string).
using LaunchStatus = int;

// cudaGetErrorString for a LaunchStatus, defined in common/cuda_status.cu so that glue compiled
// without the CUDA headers can still report it.
const char* error_string(LaunchStatus status);

// Number of streaming multiprocessors of the current device (cached per device); sizes grids.
int multiprocessor_count();

}  // namespace a1::cuda
