// Helpers shared by the CUDA torch glue (csrc/*/*_cuda.cpp): dtype tags for the torch-free
// launchers, device checks with messages that name the argument, moving small index/parameter
// tensors onto the kernel's device, and turning a launch status into a TORCH_CHECK failure.
// Host C++ only (g++), compiled in A1_CUDA builds; the kernels never see torch.
#pragma once
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/checks.h"
#include "common/cuda_dtype.h"

namespace a1 {

inline FloatType checked_float_type(const at::Tensor& t, const char* name) {
  check_float_dtype(t, name);
  return float_type_of(t);
}

// A tensor the kernel reads or writes in place: must already be on `device` (a CUDA device).
inline void check_on_device(const at::Tensor& t, const char* name, const c10::Device& device) {
  TORCH_CHECK(t.device() == device, name, " must be on ", device, " like the other CUDA inputs, got ", t.device());
}

// A small index or per-row parameter tensor: accepted on the CPU (copied to the device, which
// needs no host sync; from pinned memory the copy is asynchronous and can be captured in a CUDA
// graph) or already on `device`; returned contiguous with `dtype`.
inline at::Tensor to_device(const at::Tensor& t, const char* name, const c10::Device& device, at::ScalarType dtype) {
  TORCH_CHECK(t.device().is_cpu() || t.device() == device, name, " must be on the CPU or on ", device, ", got ",
              t.device());
  const bool pinned = t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous() && t.is_pinned();
  return t.to(device, dtype, /*non_blocking=*/pinned, /*copy=*/false).contiguous();
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

inline void check_launch(cuda::LaunchStatus status, const char* op) {
  TORCH_CHECK(status == 0, "a1::", op, ": CUDA kernel launch failed: ", cuda::error_string(status));
}

}  // namespace a1
