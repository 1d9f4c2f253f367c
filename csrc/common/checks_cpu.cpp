#include "common/checks.h"

#include <ATen/ATen.h>

namespace a1 {

at::Tensor checked_offsets(const at::Tensor& offsets, const char* name, int64_t total, const char* total_name) {
  check_dim(offsets, name, 1, "[B+1]");
  TORCH_CHECK(offsets.scalar_type() == at::kInt || offsets.scalar_type() == at::kLong, name,
              " must be int32 or int64, got ", offsets.scalar_type());
  TORCH_CHECK(offsets.numel() >= 1, name, " must have B+1 >= 1 entries");
  at::Tensor host = offsets.to(at::kCPU, at::kLong).contiguous();
  const int64_t* data = host.data_ptr<int64_t>();
  const int64_t n = host.numel();
  TORCH_CHECK(data[0] == 0, name, "[0] must be 0, got ", data[0]);
  for (int64_t i = 1; i < n; ++i) {
    TORCH_CHECK(data[i] >= data[i - 1], name, " must be non-decreasing, but ", name, "[", i, "]=", data[i],
                " < ", name, "[", i - 1, "]=", data[i - 1]);
  }
  TORCH_CHECK(data[n - 1] == total, name, "[-1] must equal ", total_name, " (", total, "), got ", data[n - 1]);
  return host;
}

}  // namespace a1
