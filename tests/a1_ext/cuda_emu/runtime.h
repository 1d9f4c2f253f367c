// A small CPU emulator of the CUDA execution model, force-included (g++ -include) ahead of the
// project's .cu files so that their kernels run, unmodified, on a machine without a GPU. It exists
// to test the kernels' logic against the pure-torch twins where no GPU is lent; it says nothing
// about performance, memory coalescing or the real hardware's memory model.
//
// Model: the blocks of a grid run one after another; the threads of a block are real threads
// (one std::thread per CUDA thread) meeting at std::barrier for __syncthreads; a warp's shuffles
// exchange values through a per-warp slot array between two warp barriers; __shared__ variables
// become function-local statics (one block at a time, so one copy suffices). build.py rewrites
// `k<<<cfg>>>(args)` to `k / a1emu::Cfg(cfg) % a1emu::pack(args)` and the dynamic
// `extern __shared__` array to a1emu::dynamic_smem<T>().
#pragma once

#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <thread>
#include <tuple>
#include <vector>

namespace a1emu {

struct BlockState {
  dim3 block_dim, grid_dim;
  std::unique_ptr<std::barrier<>> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  std::vector<uint64_t> shuffle_slots;
  std::vector<unsigned char> dynamic_smem;
  std::atomic<int> vote{0};
};

struct ThreadState {
  dim3 thread_idx, block_idx;
};

inline thread_local ThreadState tls;
inline BlockState* current_block = nullptr;

inline int linear_tid() { return static_cast<int>(tls.thread_idx.x); }

template <typename T>
T* dynamic_smem() {
  return reinterpret_cast<T*>(current_block->dynamic_smem.data());
}

template <typename T>
T shuffle(T value, int src_lane) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
  const int warp = linear_tid() / 32, lane = linear_tid() % 32;
  uint64_t* slots = current_block->shuffle_slots.data() + warp * 32;
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  slots[lane] = bits;
  current_block->warp_barriers[warp]->arrive_and_wait();
  const uint64_t got = slots[src_lane & 31];
  current_block->warp_barriers[warp]->arrive_and_wait();
  T out;
  std::memcpy(&out, &got, sizeof(T));
  return out;
}

struct Cfg {
  dim3 grid, block;
  size_t smem;
  Cfg(dim3 g, dim3 b, size_t s = 0, cudaStream_t = nullptr) : grid(g), block(b), smem(s) {}
};

template <typename... P>
struct Bound {
  void (*kernel)(P...);
  Cfg cfg;
};

template <typename... P>
Bound<P...> operator/(void (*kernel)(P...), Cfg cfg) {
  return {kernel, cfg};
}

template <typename... A>
std::tuple<std::decay_t<A>...> pack(A&&... args) {
  return std::tuple<std::decay_t<A>...>(std::forward<A>(args)...);
}

template <typename... P, typename... A>
void operator%(Bound<P...> launch, std::tuple<A...> args) {
  const dim3 grid = launch.cfg.grid, block = launch.cfg.block;
  const int threads = static_cast<int>(block.x * block.y * block.z);
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        BlockState state;
        state.block_dim = block;
        state.grid_dim = grid;
        state.block_barrier = std::make_unique<std::barrier<>>(threads);
        const int warps = (threads + 31) / 32;
        for (int w = 0; w < warps; ++w) {
          state.warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32, threads - 32 * w)));
        }
        state.shuffle_slots.assign(32 * warps, 0);
        state.dynamic_smem.assign(launch.cfg.smem + 16, 0);
        current_block = &state;
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (int t = 0; t < threads; ++t) {
          pool.emplace_back([&, t] {
            tls.thread_idx = dim3(static_cast<unsigned>(t), 0, 0);
            tls.block_idx = dim3(x, y, z);
            std::apply(launch.kernel, args);
            // A finished thread no longer takes part in barriers (kernels may return early).
            state.warp_barriers[t / 32]->arrive_and_drop();
            state.block_barrier->arrive_and_drop();
          });
        }
        for (auto& thread : pool) thread.join();
        current_block = nullptr;
      }
}

}  // namespace a1emu

#define threadIdx (::a1emu::tls.thread_idx)
#define blockIdx (::a1emu::tls.block_idx)
#define blockDim (::a1emu::current_block->block_dim)
#define gridDim (::a1emu::current_block->grid_dim)

using std::max;
using std::min;

inline void __syncthreads() { a1emu::current_block->block_barrier->arrive_and_wait(); }

inline int __syncthreads_or(int predicate) {
  auto* block = a1emu::current_block;
  if (predicate) block->vote.fetch_or(1);
  __syncthreads();
  const int result = block->vote.load();
  __syncthreads();
  if (a1emu::linear_tid() == 0) block->vote.store(0);
  __syncthreads();
  return result;
}

template <typename T>
T __shfl_sync(unsigned, T value, int src_lane, int = 32) {
  return a1emu::shuffle(value, src_lane);
}

template <typename T>
T __shfl_xor_sync(unsigned, T value, int lane_mask, int = 32) {
  return a1emu::shuffle(value, (a1emu::linear_tid() % 32) ^ lane_mask);
}

template <typename T>
T __shfl_up_sync(unsigned, T value, unsigned delta, int = 32) {
  const int lane = a1emu::linear_tid() % 32;
  return a1emu::shuffle(value, lane >= static_cast<int>(delta) ? lane - static_cast<int>(delta) : lane);
}

inline unsigned long long atomicAdd(unsigned long long* address, unsigned long long value) {
  return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

template <typename T>
T __ldg(const T* ptr) {
  return *ptr;
}

inline unsigned __float_as_uint(float x) {
  unsigned u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float __uint_as_float(unsigned u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

inline unsigned long long __double2ull_rn(double x) { return static_cast<unsigned long long>(std::nearbyint(x)); }
