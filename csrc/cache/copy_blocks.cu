// copy_blocks: copy-on-write of whole KV blocks across every layer in one launch per 32 caches.
// vLLM builds a device array of per-layer pointers, which costs a host->device copy; here the
// pointers travel by value in the kernel parameters, so the op never synchronizes.
#include "cache/cache_cuda.h"
#include "common/cuda_common.cuh"

namespace a1::cuda {
namespace {

constexpr int kCachesPerLaunch = 32;  // 256 bytes of pointers: far below the parameter limit
constexpr int64_t kMaxGridY = 65535;  // pairs per launch (grid.y limit)

struct CachePointers {
  char* base[kCachesPerLaunch];
};

// grid = (caches in this launch, pairs); each CTA copies one block of one cache.
template <typename Word>
__global__ void copy_blocks_kernel(CachePointers caches, const int64_t* __restrict__ block_mapping,
                                   int64_t num_blocks, int64_t stride_block_bytes, int64_t block_words) {
  const int64_t pair = blockIdx.y;
  const int64_t src = block_mapping[2 * pair], dst = block_mapping[2 * pair + 1];
  if (src < 0 || dst < 0 || src >= num_blocks || dst >= num_blocks || src == dst) return;
  char* base = caches.base[blockIdx.x];
  const Word* from = reinterpret_cast<const Word*>(base + src * stride_block_bytes);
  Word* to = reinterpret_cast<Word*>(base + dst * stride_block_bytes);
  for (int64_t i = threadIdx.x; i < block_words; i += blockDim.x) to[i] = from[i];
}

}  // namespace

LaunchStatus launch_copy_blocks(void* const* caches, int64_t num_caches, int64_t num_blocks, int64_t stride_block_bytes,
                                int64_t block_bytes, const int64_t* block_mapping, int64_t num_pairs,
                                cudaStream_t stream) {
  if (num_caches == 0 || num_pairs == 0 || block_bytes == 0) return 0;
  // 16-byte words when every block start is 16-byte aligned, else 2-byte (every float dtype we
  // accept is at least 2 bytes wide), else single bytes.
  bool wide = block_bytes % 16 == 0 && stride_block_bytes % 16 == 0;
  bool half = block_bytes % 2 == 0 && stride_block_bytes % 2 == 0;
  for (int64_t i = 0; i < num_caches; ++i) {
    wide = wide && aligned16(caches[i]);
    half = half && (reinterpret_cast<uintptr_t>(caches[i]) % 2 == 0);
  }
  for (int64_t first = 0; first < num_caches; first += kCachesPerLaunch) {
    const int64_t count = num_caches - first < kCachesPerLaunch ? num_caches - first : kCachesPerLaunch;
    CachePointers ptrs{};
    for (int64_t i = 0; i < count; ++i) ptrs.base[i] = static_cast<char*>(caches[first + i]);
    for (int64_t pair0 = 0; pair0 < num_pairs; pair0 += kMaxGridY) {
      const int64_t pairs = num_pairs - pair0 < kMaxGridY ? num_pairs - pair0 : kMaxGridY;
      const dim3 grid(static_cast<unsigned>(count), static_cast<unsigned>(pairs));
      const int64_t* mapping = block_mapping + 2 * pair0;
      if (wide) {
        copy_blocks_kernel<uint4><<<grid, 256, 0, stream>>>(ptrs, mapping, num_blocks, stride_block_bytes,
                                                            block_bytes / 16);
      } else if (half) {
        copy_blocks_kernel<uint16_t><<<grid, 256, 0, stream>>>(ptrs, mapping, num_blocks, stride_block_bytes,
                                                               block_bytes / 2);
      } else {
        copy_blocks_kernel<uint8_t><<<grid, 256, 0, stream>>>(ptrs, mapping, num_blocks, stride_block_bytes,
                                                              block_bytes);
      }
      const cudaError_t err = cudaGetLastError();
      if (err != cudaSuccess) return static_cast<LaunchStatus>(err);
    }
  }
  return 0;
}

}  // namespace a1::cuda
