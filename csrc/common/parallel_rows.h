// Row-parallel dispatch for the CPU glue of the per-token ops (norms, activations, RoPE): a decode
// step's handful of rows is ~1 us of work, less than a fork/join of the thread pool, so small
// inputs run inline on the calling thread and only prefill-sized ones use at::parallel_for.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

namespace a1 {

// Below this many elements a call runs inline.
constexpr int64_t kParallelRowElements = 1 << 15;

// fn(begin, end) over rows [0, num_rows) of row_elements elements each.
template <typename Fn>
void for_each_row_range(int64_t num_rows, int64_t row_elements, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, kParallelRowElements / std::max<int64_t>(row_elements, 1));
  if (num_rows <= grain) {
    fn(int64_t{0}, num_rows);
    return;
  }
  at::parallel_for(0, num_rows, grain, fn);
}

// Below this many weight elements per thread a matmul's fork/join costs more than it saves.
constexpr int64_t kParallelWeightElements = 1 << 16;

// fn(begin, end) over [0, units) units of weights_per_unit weight elements each (output features or
// panels of a linear): inline when the whole call is too little work for a fork.
template <typename Fn>
void for_each_weight_range(int64_t units, int64_t weights_per_unit, const Fn& fn) {
  const int64_t grain = std::max<int64_t>(1, kParallelWeightElements / std::max<int64_t>(1, weights_per_unit));
  if (units <= grain) {
    fn(int64_t{0}, units);
    return;
  }
  at::parallel_for(0, units, grain, fn);
}

}  // namespace a1
