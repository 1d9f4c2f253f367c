// Paged attention for ragged batches (decode, prefill chunks and scoring in one launch), GQA,
// fp32/fp16/bf16 with fp32 accumulation and an online softmax.
//
// Grid (token, q head, split). Each of the 4 warps walks tiles of 32 keys: lane j computes the
// full q.k for key j (16-byte loads when aligned), the tile's probabilities are broadcast by
// shuffle and every lane accumulates its own slice of the head dimension of V (coalesced).
// Warps merge through shared memory; with several splits a second kernel merges the partials
// (flash-decoding). Queries of one KV head are adjacent in the grid so GQA re-reads hit L2.
// Tensor-core tiling of long prefills is future work: this kernel is the correctness baseline.
#include "attention/attention_cuda.h"
#include "common/cuda_common.cuh"

namespace a1::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;

// Row b of the batch owning flattened query token t: the largest b with qsl[b] <= t, or -1 when t
// lies beyond qsl[B] (such tokens get a zero output, like the twin).
__device__ int64_t find_row(const int32_t* qsl, int64_t num_seqs, int64_t t) {
  int64_t lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (qsl[mid] <= t) lo = mid; else hi = mid - 1;
  }
  return (num_seqs > 0 && qsl[lo] <= t && t < qsl[lo + 1]) ? lo : -1;
}

template <typename T>
__device__ __forceinline__ float dot_row(const float* q, const T* k, int head_dim, bool vec_ok) {
  float s = 0.0f;
  if (vec_ok) {
    for (int d = 0; d < head_dim; d += kVec<T>) {
      float kv[kVec<T>];
      load_vec(k + d, kv);
#pragma unroll
      for (int e = 0; e < kVec<T>; ++e) s = fmaf(q[d + e], kv[e], s);
    }
  } else {
    for (int d = 0; d < head_dim; ++d) s = fmaf(q[d], to_float(k[d]), s);
  }
  return s;
}

// LANE_ELEMS = ceil(head_dim / 32) rounded up to 2, 4 or 8: each lane owns dims lane + 32 * i.
template <typename T, int LANE_ELEMS>
__global__ void __launch_bounds__(kThreads)
    paged_attention_kernel(PagedAttentionArgs a, int64_t partition, bool vec_ok, float* __restrict__ part_max,
                           float* __restrict__ part_sum, float* __restrict__ part_out) {
  extern __shared__ float smem[];
  float* q_s = smem;                  // [D]
  float* acc_s = smem + a.head_dim;   // [kWarps][D]
  __shared__ float warp_m[kWarps], warp_l[kWarps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int D = static_cast<int>(a.head_dim);
  const int64_t t = blockIdx.x, h = blockIdx.y, split = blockIdx.z, num_splits = gridDim.z;
  const int64_t kv_head = h / (a.num_q_heads / a.num_kv_heads);

  int64_t begin = 0, end = 0, row = find_row(a.query_start_loc, a.num_seqs, t);
  if (row >= 0) {
    const int64_t q0 = a.query_start_loc[row], q_len = a.query_start_loc[row + 1] - q0;
    const int64_t seq_len = min(static_cast<int64_t>(a.seq_lens[row]), a.max_blocks * a.block_size);
    // Causal: the query is position seq_len - q_len + (t - q0) and sees keys 0..position.
    const int64_t kv_len = max(int64_t{0}, min(seq_len, seq_len - q_len + (t - q0) + 1));
    begin = split * partition;
    end = min(kv_len, begin + partition);
  }
  const T* query = static_cast<const T*>(a.query) + t * a.q_stride_token + h * a.q_stride_head;
  for (int d = threadIdx.x; d < D; d += kThreads) q_s[d] = to_float(query[d]);
  __syncthreads();

  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const int32_t* table = a.block_table + (row >= 0 ? row * a.block_table_stride : 0);
  float m = -INFINITY, l = 0.0f, acc[LANE_ELEMS];
#pragma unroll
  for (int i = 0; i < LANE_ELEMS; ++i) acc[i] = 0.0f;

  for (int64_t base = begin + warp * 32; base < end; base += kThreads) {
    const int64_t j = base + lane;
    const bool valid = j < end;
    float score = -INFINITY;
    int64_t v_off = 0;  // lanes past `end` have no key: the V loop below stops before them
    if (valid) {
      const int64_t block = table[j / a.block_size], slot = j % a.block_size;
      const int64_t inner = (slot * a.num_kv_heads + kv_head) * a.head_dim;
      score = dot_row(q_s, k_cache + block * a.k_stride_block + inner, D, vec_ok) * a.scale;
      v_off = block * a.v_stride_block + inner;
    }
    const float m_new = fmaxf(m, warp_max(score));
    const float p = valid ? expf(score - m_new) : 0.0f;
    const float correction = expf(m - m_new);  // 0 on the first tile (m = -inf)
    l = l * correction + warp_sum(p);
#pragma unroll
    for (int i = 0; i < LANE_ELEMS; ++i) acc[i] *= correction;
    // Only the tile's valid lanes (a warp-uniform count, so every shuffle has all 32 lanes): reading
    // V at slot 0 for the others, even with weight 0, would turn one non-finite value there into a
    // NaN in every output (0 * inf).
    const int valid_lanes = static_cast<int>(min(int64_t{32}, end - base));
#pragma unroll 8
    for (int jj = 0; jj < valid_lanes; ++jj) {
      const float pj = __shfl_sync(kFullMask, p, jj);
      const T* v_row = v_cache + __shfl_sync(kFullMask, v_off, jj);
#pragma unroll
      for (int i = 0; i < LANE_ELEMS; ++i) {
        const int d = lane + 32 * i;
        if (d < D) acc[i] = fmaf(pj, to_float(v_row[d]), acc[i]);
      }
    }
    m = m_new;
  }

  // Merge the warps' (max, sum, acc) triples.
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
#pragma unroll
  for (int i = 0; i < LANE_ELEMS; ++i) {
    const int d = lane + 32 * i;
    if (d < D) acc_s[warp * D + d] = acc[i];
  }
  __syncthreads();
  float m_all = -INFINITY;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, warp_m[w]);
  float weight[kWarps], l_all = 0.0f;
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = m_all == -INFINITY ? 0.0f : expf(warp_m[w] - m_all);
    l_all += warp_l[w] * weight[w];
  }
  const int64_t head_index = t * a.num_q_heads + h;
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float o = 0.0f;
    for (int w = 0; w < kWarps; ++w) o += acc_s[w * D + d] * weight[w];
    if (num_splits == 1) {
      static_cast<T*>(a.out)[head_index * D + d] = from_float<T>(l_all > 0.0f ? o / l_all : 0.0f);
    } else {
      part_out[(head_index * num_splits + split) * D + d] = o;
    }
  }
  if (num_splits > 1 && threadIdx.x == 0) {
    part_max[head_index * num_splits + split] = m_all;
    part_sum[head_index * num_splits + split] = l_all;
  }
}

// Merges the splits of one (token, head): out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M).
template <typename T>
__global__ void merge_splits_kernel(const float* __restrict__ part_max, const float* __restrict__ part_sum,
                                    const float* __restrict__ part_out, T* __restrict__ out, int64_t num_splits,
                                    int64_t head_dim) {
  const int64_t head_index = blockIdx.x;
  const float* pm = part_max + head_index * num_splits;
  const float* pl = part_sum + head_index * num_splits;
  float m_all = -INFINITY;
  for (int64_t s = 0; s < num_splits; ++s) m_all = fmaxf(m_all, pm[s]);
  float l_all = 0.0f;
  for (int64_t s = 0; s < num_splits; ++s) l_all += m_all == -INFINITY ? 0.0f : pl[s] * expf(pm[s] - m_all);
  for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int64_t s = 0; s < num_splits; ++s) {
      if (pm[s] != -INFINITY) o += part_out[(head_index * num_splits + s) * head_dim + d] * expf(pm[s] - m_all);
    }
    out[head_index * head_dim + d] = from_float<T>(l_all > 0.0f ? o / l_all : 0.0f);
  }
}

template <typename T, int LANE_ELEMS>
void launch_typed(const PagedAttentionArgs& a, AttentionSplitPlan plan, float* part_max, float* part_sum,
                  float* part_out, cudaStream_t stream) {
  const bool vec_ok = a.head_dim % kVec<T> == 0 && aligned16(a.k_cache) &&
                      (a.k_stride_block * static_cast<int64_t>(sizeof(T))) % 16 == 0;
  const dim3 grid(static_cast<unsigned>(a.num_tokens), static_cast<unsigned>(a.num_q_heads),
                  static_cast<unsigned>(plan.num_splits));
  const size_t smem = static_cast<size_t>(1 + kWarps) * a.head_dim * sizeof(float);
  paged_attention_kernel<T, LANE_ELEMS>
      <<<grid, kThreads, smem, stream>>>(a, plan.partition, vec_ok, part_max, part_sum, part_out);
  if (plan.num_splits > 1) {
    merge_splits_kernel<T><<<static_cast<unsigned>(a.num_tokens * a.num_q_heads), 128, 0, stream>>>(
        part_max, part_sum, part_out, static_cast<T*>(a.out), plan.num_splits, a.head_dim);
  }
}

}  // namespace

AttentionSplitPlan plan_paged_attention(int64_t num_tokens, int64_t num_q_heads, int64_t max_kv_len) {
  constexpr int64_t kMinPartition = 256;
  const int64_t ctas = num_tokens * num_q_heads;
  // Aim for ~8 CTAs of 4 warps per SM: decode batches are too small to fill an H100/H200 with
  // one CTA per (token, head), and the KV read is the whole cost.
  const int64_t target = 8 * static_cast<int64_t>(multiprocessor_count());
  int64_t splits = ctas >= target || ctas == 0 ? 1 : (target + ctas - 1) / ctas;
  const int64_t max_splits = (max_kv_len + kMinPartition - 1) / kMinPartition;
  splits = max(int64_t{1}, min(splits, max_splits));
  int64_t partition = (max_kv_len + splits - 1) / splits;
  partition = max(kMinPartition, (partition + kThreads - 1) / kThreads * kThreads);
  splits = max(int64_t{1}, (max_kv_len + partition - 1) / partition);
  return {splits, partition};
}

LaunchStatus launch_paged_attention(const PagedAttentionArgs& args, AttentionSplitPlan plan, float* partial_max,
                                    float* partial_sum, float* partial_out, cudaStream_t stream) {
  if (args.num_tokens == 0 || args.num_q_heads == 0 || args.head_dim == 0) return 0;
  A1_DISPATCH_FLOAT(args.kind, {
    if (args.head_dim <= 64) {
      launch_typed<scalar_t, 2>(args, plan, partial_max, partial_sum, partial_out, stream);
    } else if (args.head_dim <= 128) {
      launch_typed<scalar_t, 4>(args, plan, partial_max, partial_sum, partial_out, stream);
    } else {
      launch_typed<scalar_t, 8>(args, plan, partial_max, partial_sum, partial_out, stream);
    }
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
