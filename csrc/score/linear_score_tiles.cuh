// The vocab-tile kernels of linear_step_score: each CTA computes one [64 tokens x 64 vocab] tile
// of hidden @ lm_head.T in shared memory / registers, and reduces it on the spot to a per-row
// partial (max, sum-exp) plus the logit of the row's target token if it lies in the tile. Only
// those partials reach global memory, never the logits.
//   - fp16/bf16: WMMA tensor cores (16x16x16, fp32 accumulate), 4 warps of 32x32 each.
//   - fp32: CUDA-core FMA, 256 threads of 4x4 outputs (exact fp32 like the twin's matmul).
#pragma once
#include <mma.h>

#include "common/cuda_row.cuh"

namespace a1::cuda {

constexpr int kTileM = 64, kTileN = 64;

struct LinearTileArgs {
  const void* hidden;
  const void* lm_head;
  int64_t hidden_stride, lm_head_stride;
  int64_t num_tokens, hidden_size, vocab;
  float temperature;
  int64_t vocab_begin, vocab_end;  // this launch's vocab rows
  const int64_t* token_ids;
  MaxSum* partial;     // [tiles of this launch, num_tokens]
  float* token_logit;  // [num_tokens], NaN until the token's tile writes it
  bool vec_ok;         // 16-byte loads of hidden / lm_head rows are legal
};

// Adds the raw logit of (row gm, vocab gn) to the thread's running partial of that row and
// captures it as the token logit when gn is the row's target id (exactly one tile holds it).
__device__ __forceinline__ void add_logit(MaxSum& acc, const LinearTileArgs& a, int64_t gm, int64_t gn, float raw) {
  const float x = raw / a.temperature;  // divide like the twin (logits / temperature)
  online_add(acc, x);
  if (a.token_ids[gm] == gn) a.token_logit[gm] = x;
}

// -------------------------------------------------------------------------- fp32: FMA tiles
constexpr int kFmaK = 16, kFmaThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kFmaThreads) linear_score_fma_kernel(LinearTileArgs a) {
  __shared__ float a_s[kFmaK][kTileM + 4];
  __shared__ float b_s[kFmaK][kTileN + 4];
  const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int64_t n0 = a.vocab_begin + static_cast<int64_t>(blockIdx.y) * kTileN;
  const T* hidden = static_cast<const T*>(a.hidden);
  const T* lm_head = static_cast<const T*>(a.lm_head);
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < a.hidden_size; k0 += kFmaK) {
#pragma unroll
    for (int i = 0; i < kTileM * kFmaK / kFmaThreads; ++i) {
      const int idx = tid + i * kFmaThreads, r = idx / kFmaK, kk = idx % kFmaK;
      const int64_t gk = k0 + kk, gm = m0 + r, gn = n0 + r;
      a_s[kk][r] = gm < a.num_tokens && gk < a.hidden_size ? to_float(hidden[gm * a.hidden_stride + gk]) : 0.0f;
      b_s[kk][r] = gn < a.vocab_end && gk < a.hidden_size ? to_float(lm_head[gn * a.lm_head_stride + gk]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kFmaK; ++kk) {
      float av[4], bv[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        av[i] = a_s[kk][ty * 4 + i];
        bv[i] = b_s[kk][tx * 4 + i];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
  // The 16 threads of a row are lanes tx = 0..15 of one half-warp: merge with xor-shuffles < 16.
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t gm = m0 + ty * 4 + i;
    MaxSum part{-INFINITY, 0.0f};
    if (gm < a.num_tokens) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t gn = n0 + tx * 4 + j;
        if (gn < a.vocab_end) add_logit(part, a, gm, gn, acc[i][j]);
      }
    }
#pragma unroll
    for (int s = 8; s > 0; s >>= 1) {
      part = merge(part, MaxSum{__shfl_xor_sync(kFullMask, part.max, s), __shfl_xor_sync(kFullMask, part.sum, s)});
    }
    if (tx == 0 && gm < a.num_tokens) a.partial[static_cast<int64_t>(blockIdx.y) * a.num_tokens + gm] = part;
  }
}

// -------------------------------------------------------------------------- fp16/bf16: WMMA tiles
constexpr int kWmmaK = 32, kWmmaThreads = 128, kWmmaPitch = kWmmaK + 8, kCPitch = kTileN + 4;

// Stages rows [row0, row0 + 64) x [k0, k0 + 32) of a row-major [rows, H] matrix into tile[64][pitch],
// zero-filling outside [rows_end) x [H).
template <typename T>
__device__ __forceinline__ void stage_tile(T* tile, const T* src, int64_t stride, int64_t row0, int64_t rows_end,
                                           int64_t k0, int64_t hidden_size, bool vec_ok) {
  if (vec_ok) {  // H % 8 == 0 and rows 16-byte aligned: a vector is wholly inside or outside
    constexpr int kPerRow = kWmmaK / 8;
#pragma unroll
    for (int i = 0; i < kTileM * kPerRow / kWmmaThreads; ++i) {
      const int idx = threadIdx.x + i * kWmmaThreads, r = idx / kPerRow, c = (idx % kPerRow) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (row0 + r < rows_end && k0 + c < hidden_size) v = *reinterpret_cast<const uint4*>(src + (row0 + r) * stride + k0 + c);
      *reinterpret_cast<uint4*>(tile + r * kWmmaPitch + c) = v;
    }
  } else {
    for (int idx = threadIdx.x; idx < kTileM * kWmmaK; idx += kWmmaThreads) {
      const int r = idx / kWmmaK, c = idx % kWmmaK;
      const bool inside = row0 + r < rows_end && k0 + c < hidden_size;
      tile[r * kWmmaPitch + c] = inside ? src[(row0 + r) * stride + k0 + c] : from_float<T>(0.0f);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kWmmaThreads) linear_score_wmma_kernel(LinearTileArgs a) {
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(32) T a_s[kTileM * kWmmaPitch];
  __shared__ __align__(32) T b_s[kTileN * kWmmaPitch];
  __shared__ __align__(32) float c_s[kTileM * kCPitch];
  const int warp = threadIdx.x / 32, warp_m = warp / 2, warp_n = warp % 2;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * kTileM;
  const int64_t n0 = a.vocab_begin + static_cast<int64_t>(blockIdx.y) * kTileN;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);

  for (int64_t k0 = 0; k0 < a.hidden_size; k0 += kWmmaK) {
    stage_tile(a_s, static_cast<const T*>(a.hidden), a.hidden_stride, m0, a.num_tokens, k0, a.hidden_size, a.vec_ok);
    stage_tile(b_s, static_cast<const T*>(a.lm_head), a.lm_head_stride, n0, a.vocab_end, k0, a.hidden_size, a.vec_ok);
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kWmmaK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];  // (k, n) = lm_head[n][k]
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], a_s + (warp_m * 32 + i * 16) * kWmmaPitch + kk, kWmmaPitch);
        wmma::load_matrix_sync(fb[i], b_s + (warp_n * 32 + i * 16) * kWmmaPitch + kk, kWmmaPitch);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(c_s + (warp_m * 32 + i * 16) * kCPitch + warp_n * 32 + j * 16, acc[i][j], kCPitch,
                              wmma::mem_row_major);
  __syncthreads();
  // Two threads per row (adjacent lanes), 32 columns each.
  const int r = threadIdx.x / 2, half = threadIdx.x % 2;
  const int64_t gm = m0 + r;
  MaxSum part{-INFINITY, 0.0f};
  if (gm < a.num_tokens) {
    for (int c = half * 32; c < half * 32 + 32; ++c) {
      const int64_t gn = n0 + c;
      if (gn < a.vocab_end) add_logit(part, a, gm, gn, c_s[r * kCPitch + c]);
    }
  }
  part = merge(part, MaxSum{__shfl_xor_sync(kFullMask, part.max, 1), __shfl_xor_sync(kFullMask, part.sum, 1)});
  if (half == 0 && gm < a.num_tokens) a.partial[static_cast<int64_t>(blockIdx.y) * a.num_tokens + gm] = part;
}

}  // namespace a1::cuda
