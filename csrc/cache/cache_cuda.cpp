// CUDA glue of the KV-cache ops: the argument checks shared with the CPU glue
// (cache/cache_checks.h), device guard, current stream, then the
// torch-free launchers of csrc/cache/*.cu. Registered beside the CPU kernels under the CUDA key.
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "cache/cache_checks.h"
#include "cache/cache_cuda.h"
#include "common/cuda_glue.h"

namespace a1 {
namespace {

cuda::TokenTensor token_tensor(const at::Tensor& t, const char* name) {
  return {t.data_ptr(), checked_float_type(t, name), t.stride(0), t.stride(1), t.stride(2)};
}

cuda::CacheTensor cache_tensor(const at::Tensor& t, const char* name) {
  return {t.data_ptr(), checked_float_type(t, name), t.size(0), t.stride(0)};
}

void reshape_and_cache_cuda(const at::Tensor& key, const at::Tensor& value, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, const at::Tensor& slot_mapping) {
  check_reshape_and_cache_inputs(key, value, k_cache, v_cache, slot_mapping);
  const auto device = k_cache.device();
  TORCH_CHECK(device.is_cuda(), "k_cache must be a CUDA tensor, got ", device);
  // Slots given on the CPU are validated like the CPU kernel's (free); on the device they are not
  // (a host read per layer per step) and the kernel skips an out-of-range slot.
  if (slot_mapping.device().is_cpu()) {
    const at::Tensor host = slot_mapping.contiguous();
    check_slot_values(host.data_ptr<int64_t>(), host.size(0), k_cache);
  }
  const at::Tensor slots = to_device(slot_mapping, "slot_mapping", device, at::kLong);

  c10::cuda::CUDAGuard guard(device);
  check_launch(cuda::launch_reshape_and_cache(token_tensor(key, "key"), token_tensor(value, "value"),
                                              cache_tensor(k_cache, "k_cache"), cache_tensor(v_cache, "v_cache"),
                                              slots.data_ptr<int64_t>(), key.size(0), k_cache.size(1),
                                              key.size(1), key.size(2), current_stream()),
               "reshape_and_cache");
}

void copy_blocks_cuda(at::TensorList k_caches, at::TensorList v_caches, const at::Tensor& block_mapping) {
  const int64_t num_blocks = check_copy_blocks_inputs(k_caches, v_caches, block_mapping);
  if (k_caches.empty()) return;
  const auto device = k_caches[0].device();
  TORCH_CHECK(device.is_cuda(), "k_caches[0] must be a CUDA tensor, got ", device);
  // The mapping is validated on the host like the CPU kernel's (one device read when it is given on
  // the device; copy-on-write is rare): concurrent CTAs would tear a copy whose destination is
  // another pair's source or is written twice.
  const std::vector<int64_t> ids = index_values(block_mapping, "block_mapping");
  check_block_mapping_values(ids.data(), block_mapping.size(0), num_blocks);
  if (block_mapping.size(0) == 0) return;
  const at::Tensor mapping = to_device(block_mapping, "block_mapping", device, at::kLong);
  c10::cuda::CUDAGuard guard(device);
  // One launch per group of caches with the same block stride and block size (the launcher
  // shares them), so caches of different shapes are accepted as on the CPU.
  struct Group {
    int64_t stride_bytes, block_bytes;
    std::vector<void*> pointers;
  };
  std::vector<Group> groups;
  for (const auto* list : {&k_caches, &v_caches}) {
    for (const at::Tensor& cache : *list) {
      const int64_t elem = static_cast<int64_t>(cache.element_size());
      const int64_t stride_bytes = cache.stride(0) * elem;
      const int64_t block_bytes = cache.size(1) * cache.size(2) * cache.size(3) * elem;
      auto group = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
        return g.stride_bytes == stride_bytes && g.block_bytes == block_bytes;
      });
      if (group == groups.end()) group = groups.insert(groups.end(), Group{stride_bytes, block_bytes, {}});
      group->pointers.push_back(cache.data_ptr());
    }
  }
  for (const Group& g : groups) {
    check_launch(cuda::launch_copy_blocks(g.pointers.data(), static_cast<int64_t>(g.pointers.size()), num_blocks,
                                         g.stride_bytes, g.block_bytes, mapping.data_ptr<int64_t>(),
                                         block_mapping.size(0), current_stream()),
                 "copy_blocks");
  }
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("reshape_and_cache", &a1::reshape_and_cache_cuda);
  m.impl("copy_blocks", &a1::copy_blocks_cuda);
}
