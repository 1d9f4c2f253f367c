#include "common/checks.h"

#include <ATen/ATen.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <limits>

namespace a1 {

namespace {

// One branch-free pass per thread over a CPU tensor (draft_probs is [k, V]: a chain of torch ops
// over it, with their boolean temporaries, cost more than the verification itself).
template <typename T>
bool chunk_finite_nonnegative(const T* data, int64_t begin, int64_t end) {
  unsigned bad = 0;
  for (int64_t i = begin; i < end; ++i) {
    const float v = static_cast<float>(data[i]);
    bad |= static_cast<unsigned>(!(v >= 0.0f)) | static_cast<unsigned>(v > std::numeric_limits<float>::max());
  }
  return bad == 0;
}

bool all_finite_nonnegative_cpu(const at::Tensor& flat) {
  const at::Tensor values = flat.contiguous();
  std::atomic<bool> ok{true};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, values.scalar_type(), "check_finite_nonnegative", [&] {
    const scalar_t* data = values.const_data_ptr<scalar_t>();
    at::parallel_for(0, values.numel(), 1 << 16, [&](int64_t begin, int64_t end) {
      if (!chunk_finite_nonnegative(data, begin, end)) ok.store(false, std::memory_order_relaxed);
    });
  });
  return ok.load();
}

void check_offset_values(const int64_t* data, int64_t n, const char* name, int64_t total, const char* total_name) {
  TORCH_CHECK(n >= 1, name, " must have B+1 >= 1 entries");
  TORCH_CHECK(data[0] == 0, name, "[0] must be 0, got ", data[0]);
  for (int64_t i = 1; i < n; ++i) {
    TORCH_CHECK(data[i] >= data[i - 1], name, " must be non-decreasing, but ", name, "[", i, "]=", data[i],
                " < ", name, "[", i - 1, "]=", data[i - 1]);
  }
  TORCH_CHECK(data[n - 1] == total, name, "[-1] must equal ", total_name, " (", total, "), got ", data[n - 1]);
}

}  // namespace

void check_index_dtype(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kInt || t.scalar_type() == at::kLong, name, " must be int32 or int64, got ",
              t.scalar_type());
}

at::Tensor checked_offsets(const at::Tensor& offsets, const char* name, int64_t total, const char* total_name) {
  check_dim(offsets, name, 1, "[B+1]");
  check_index_dtype(offsets, name);
  at::Tensor host = offsets.to(at::kCPU, at::kLong).contiguous();
  check_offset_values(host.data_ptr<int64_t>(), host.numel(), name, total, total_name);
  return host;
}

std::vector<int64_t> index_values(const at::Tensor& t, const char* name) {
  check_index_dtype(t, name);
  // The common case (a small contiguous CPU tensor) is read directly: no torch op, no allocation
  // but the vector's.
  const at::Tensor host = t.device().is_cpu() && t.is_contiguous() ? t : t.to(at::kCPU).contiguous();
  std::vector<int64_t> values(host.numel());
  if (host.scalar_type() == at::kInt) {
    const int32_t* data = host.data_ptr<int32_t>();
    std::copy(data, data + host.numel(), values.begin());
  } else {
    const int64_t* data = host.data_ptr<int64_t>();
    std::copy(data, data + host.numel(), values.begin());
  }
  return values;
}

void check_index_range(const at::Tensor& t, const char* name, int64_t bound) {
  if (t.numel() == 0) return;
  const auto [min_t, max_t] = at::aminmax(t);
  const int64_t lo = min_t.item<int64_t>(), hi = max_t.item<int64_t>();
  TORCH_CHECK(lo >= 0 && hi < bound, name, " must be in [0, ", bound, "), got values in [", lo, ", ", hi, "]");
}

void check_finite_nonnegative(const at::Tensor& t, const char* name) {
  if (t.numel() == 0) return;
  const at::Tensor flat = t.reshape({-1});
  if (flat.device().is_cpu() ? all_finite_nonnegative_cpu(flat) : !at::logical_not(at::isfinite(flat).logical_and_(
          flat.ge(0))).any().item<bool>()) {
    return;
  }
  const at::Tensor bad = at::logical_not(at::isfinite(flat).logical_and_(flat.ge(0)));
  int64_t rest = at::nonzero(bad)[0][0].item<int64_t>();
  const double value = flat[rest].item<double>();
  std::vector<int64_t> index(t.dim());  // the flat position as one index per dim, for the message
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    index[d] = rest % t.size(d);
    rest /= t.size(d);
  }
  TORCH_CHECK(false, name, at::IntArrayRef(index), " must be finite and >= 0, got ", value);
}

std::vector<int64_t> checked_offset_values(const at::Tensor& offsets, const char* name, int64_t total,
                                           const char* total_name) {
  check_dim(offsets, name, 1, "[B+1]");
  std::vector<int64_t> values = index_values(offsets, name);
  check_offset_values(values.data(), static_cast<int64_t>(values.size()), name, total, total_name);
  return values;
}

}  // namespace a1
