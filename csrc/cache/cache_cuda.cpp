// CUDA glue of the KV-cache ops: argument checks, device guard, current stream, then the
// torch-free launchers of csrc/cache/*.cu. Registered beside the CPU kernels under the CUDA key.
#include <torch/library.h>

#include <vector>

#include "cache/cache_cuda.h"
#include "common/cuda_glue.h"

namespace a1 {
namespace {

cuda::TokenTensor token_tensor(const at::Tensor& t, const char* name) {
  return {t.data_ptr(), float_kind(t, name), t.stride(0), t.stride(1), t.stride(2)};
}

cuda::CacheTensor cache_tensor(const at::Tensor& t, const char* name) {
  check_cache_layout(t, name);
  return {t.data_ptr(), float_kind(t, name), t.size(0), t.stride(0)};
}

void reshape_and_cache_cuda(const at::Tensor& key, const at::Tensor& value, const at::Tensor& k_cache,
                            const at::Tensor& v_cache, const at::Tensor& slot_mapping) {
  check_dim(key, "key", 3, "[T, num_kv_heads, head_dim]");
  TORCH_CHECK(value.sizes() == key.sizes(), "value must have key's shape ", key.sizes(), ", got ", value.sizes());
  check_same_dtype(value, "value", key, "key");
  const auto device = k_cache.device();
  TORCH_CHECK(device.is_cuda(), "k_cache must be a CUDA tensor, got ", device);
  check_on_device(key, "key", device);
  check_on_device(value, "value", device);
  check_on_device(v_cache, "v_cache", device);
  const auto k = cache_tensor(k_cache, "k_cache"), v = cache_tensor(v_cache, "v_cache");
  TORCH_CHECK(v_cache.sizes() == k_cache.sizes() && v_cache.scalar_type() == k_cache.scalar_type(),
              "v_cache must match k_cache in shape and dtype: ", k_cache.sizes(), " ", k_cache.scalar_type(),
              " vs ", v_cache.sizes(), " ", v_cache.scalar_type());
  check_size(k_cache, "k_cache", 2, key.size(1), "key.size(1) (num_kv_heads)");
  check_size(k_cache, "k_cache", 3, key.size(2), "key.size(2) (head_dim)");
  check_dim(slot_mapping, "slot_mapping", 1, "[T]");
  check_dtype(slot_mapping, "slot_mapping", at::kLong);
  check_size(slot_mapping, "slot_mapping", 0, key.size(0), "key.size(0) (T)");
  const at::Tensor slots = to_device(slot_mapping, "slot_mapping", device, at::kLong);

  c10::cuda::CUDAGuard guard(device);
  check_launch(cuda::launch_reshape_and_cache(token_tensor(key, "key"), token_tensor(value, "value"), k, v,
                                              slots.data_ptr<int64_t>(), key.size(0), k_cache.size(1),
                                              key.size(1), key.size(2), current_stream()),
               "reshape_and_cache");
}

void copy_blocks_cuda(at::TensorList k_caches, at::TensorList v_caches, const at::Tensor& block_mapping) {
  TORCH_CHECK(k_caches.size() == v_caches.size(), "k_caches and v_caches must have as many layers, got ",
              k_caches.size(), " and ", v_caches.size());
  check_dim(block_mapping, "block_mapping", 2, "[P, 2]");
  check_size(block_mapping, "block_mapping", 1, 2, "2 (src, dst)");
  check_dtype(block_mapping, "block_mapping", at::kLong);
  if (k_caches.empty() || block_mapping.size(0) == 0) return;
  const at::Tensor& first = k_caches[0];
  const auto device = first.device();
  TORCH_CHECK(device.is_cuda(), "k_caches[0] must be a CUDA tensor, got ", device);
  check_cache_layout(first, "k_caches[0]");
  std::vector<void*> pointers;
  pointers.reserve(2 * k_caches.size());
  for (const auto* list : {&k_caches, &v_caches}) {
    const char* name = list == &k_caches ? "k_caches" : "v_caches";
    for (size_t i = 0; i < list->size(); ++i) {
      const at::Tensor& cache = (*list)[i];
      check_on_device(cache, name, device);
      check_cache_layout(cache, name);
      TORCH_CHECK(cache.sizes() == first.sizes() && cache.strides() == first.strides() &&
                      cache.scalar_type() == first.scalar_type(),
                  name, "[", i, "] must match k_caches[0] in shape, strides and dtype (", first.sizes(), ", ",
                  first.strides(), ", ", first.scalar_type(), "), got ", cache.sizes(), ", ", cache.strides(), ", ",
                  cache.scalar_type());
      pointers.push_back(cache.data_ptr());
    }
  }
  const at::Tensor mapping = to_device(block_mapping, "block_mapping", device, at::kLong);
  const int64_t elem = static_cast<int64_t>(first.element_size());
  c10::cuda::CUDAGuard guard(device);
  check_launch(cuda::launch_copy_blocks(pointers.data(), static_cast<int64_t>(pointers.size()), first.size(0),
                                       first.stride(0) * elem, first.size(1) * first.size(2) * first.size(3) * elem,
                                       mapping.data_ptr<int64_t>(), mapping.size(0), current_stream()),
               "copy_blocks");
}

}  // namespace
}  // namespace a1

TORCH_LIBRARY_IMPL(a1, CUDA, m) {
  m.impl("reshape_and_cache", &a1::reshape_and_cache_cuda);
  m.impl("copy_blocks", &a1::copy_blocks_cuda);
}
