// Host helpers shared by every launcher: error strings and the (cached) SM count used to size
// split-KV grids. Compiled by nvcc with only the CUDA runtime.
#include <cuda_runtime.h>

#include <atomic>

#include "common/cuda_dtype.h"

namespace a1::cuda {

const char* error_string(LaunchStatus status) {
  return cudaGetErrorString(static_cast<cudaError_t>(status));
}

int multiprocessor_count() {
  // One slot per device ordinal; 0 means "not read yet". Reading the attribute is cheap but not
  // free, and launchers call this on every op invocation.
  static std::atomic<int> cache[64];
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0) return 108;
  if (device < 64) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int count = 0;
  if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || count <= 0) {
    cudaGetLastError();  // clear the sticky-free error so the next launch check is not confused
    return 108;
  }
  if (device < 64) cache[device].store(count, std::memory_order_relaxed);
  return count;
}

}  // namespace a1::cuda
