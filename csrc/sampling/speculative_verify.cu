// speculative_verify: lossless verification of ragged drafts without materialising probabilities.
//
// Kernel 1, one CTA per target row (all rows of all requests in parallel): raw log-softmax of the
// row (the target log-prob of the draft token, for scoring), first argmax (greedy), and for
// sampled requests the temperature/top-k/top-p filter with its normaliser, from which the draft
// token's target probability p follows. Rows past a request's first rejection are wasted work,
// the price of not serialising rows inside one CTA.
// Kernel 2, one CTA per request: thread 0 runs the accept chain (u * q < p with float64 uniforms of
// Philox kVerifyAccept at position i), then the whole CTA runs one vectorised vocab pass: the
// exponential race over max(0, p - q) (falling back to p when that is all zero) at the first
// rejection, or over p for the bonus token, with kVerifyRace uniforms at that position. Results
// and acceptance counts stay on the device; nothing here synchronises with the host.
#include "sampling/greedy_temperature.h"
#include "sampling/row_filter.cuh"
#include "sampling/sampling_cuda.h"

namespace a1::cuda {
namespace {

constexpr int kVerifyThreads = 512;

struct VerifyRowStats {
  float scaled_max, cut, sum;  // the row's filter (RowFilter)
  float p_draft;               // target probability of the draft token at this position (0 if none)
  int64_t argmax;              // first argmax of the raw row
  bool usable;                 // RawStats::usable: the glue refuses a request with an unusable row
};

template <typename T>
__global__ void __launch_bounds__(kVerifyThreads)
    verify_rows_kernel(VerifyInputs in, SamplingParams params, VerifyRowStats* __restrict__ stats,
                       float* __restrict__ target_logprob) {
  __shared__ RowScratch sc;
  const int64_t r = blockIdx.x;
  // Request b owns rows cu[b] + b .. cu[b+1] + b (k_b drafts + 1 bonus row).
  int64_t lo = 0, hi = in.batch - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (in.cu_num_draft[mid] + mid <= r) lo = mid; else hi = mid - 1;
  }
  const int64_t b = lo, d0 = in.cu_num_draft[b], k = in.cu_num_draft[b + 1] - d0, i = r - (d0 + b);
  const T* row = static_cast<const T*>(in.target_logits) + r * in.target_stride;
  const RawStats raw = raw_row_stats(row, in.vocab, sc);
  const int64_t token = i < k ? in.draft_token_ids[d0 + i] : -1;
  const bool valid_token = token >= 0 && token < in.vocab;
  const float temperature = params.temperature[b];
  RowFilter filter{0.0f, -INFINITY, 0.0f};
  float p_draft = 0.0f;
  if (raw.usable && !(temperature < kGreedyTemperature)) {
    filter = row_filter(row, in.vocab, raw.softmax.max, temperature, params.top_k[b], params.top_p[b], true, sc);
    if (valid_token) {
      const float s = to_float(row[token]) / temperature;
      if (s >= filter.cut) p_draft = expf(s - filter.scaled_max) / filter.sum;
    }
  }
  if (threadIdx.x == 0) {
    if (i < k) {
      target_logprob[d0 + i] =
          valid_token && raw.usable ? raw_logprob(raw, to_float(row[token])) : NAN;
    }
    stats[r] = VerifyRowStats{filter.scaled_max, filter.cut, filter.sum, p_draft, raw.argmax.index, raw.usable};
  }
}

template <typename T, typename Q>
__global__ void __launch_bounds__(kVerifyThreads)
    verify_requests_kernel(VerifyInputs in, SamplingParams params, const VerifyRowStats* __restrict__ stats,
                           VerifyOutputs out) {
  __shared__ RowScratch sc;
  __shared__ int64_t accepted_s;
  const int64_t b = blockIdx.x, d0 = in.cu_num_draft[b], k = in.cu_num_draft[b + 1] - d0, r0 = d0 + b;
  const float temperature = params.temperature[b];
  const int64_t seed = params.seed[b], offset = params.offset[b];
  const Q* draft_probs = static_cast<const Q*>(in.draft_probs);
  __shared__ bool usable_s;
  if (threadIdx.x == 0) {
    bool usable = true;
    for (int64_t i = 0; i <= k; ++i) usable = usable && stats[r0 + i].usable;
    usable_s = usable;
  }
  __syncthreads();
  if (!usable_s) {  // a NaN / +inf / all -inf row: num_accepted -1 tells the glue to refuse the call
    int64_t* ids = out.out_ids + b * out.width;
    for (int64_t j = threadIdx.x; j < out.width; j += blockDim.x) ids[j] = -1;
    if (threadIdx.x == 0) out.num_accepted[b] = -1;
    return;
  }
  if (threadIdx.x == 0) {
    int64_t a = 0;
    if (temperature < kGreedyTemperature) {
      while (a < k && in.draft_token_ids[d0 + a] == stats[r0 + a].argmax) ++a;
    } else {
      for (; a < k; ++a) {
        const int64_t token = in.draft_token_ids[d0 + a];
        double q = 1.0;  // deterministic draft
        if (draft_probs != nullptr) {
          q = token >= 0 && token < in.vocab ? to_float(draft_probs[(d0 + a) * in.draft_stride + token]) : 0.0;
        }
        const Philox4 bits = philox_draw(seed, offset, RngPurpose::kVerifyAccept, static_cast<uint32_t>(a), 0);
        const double u = open_uniform_double(bits.v[0], bits.v[1]);
        if (!(u * q < static_cast<double>(stats[r0 + a].p_draft))) break;
      }
    }
    accepted_s = a;
  }
  __syncthreads();
  const int64_t a = accepted_s;
  const VerifyRowStats st = stats[r0 + a];
  int64_t chosen = st.argmax;
  if (!(temperature < kGreedyTemperature)) {
    const T* row = static_cast<const T*>(in.target_logits) + (r0 + a) * in.target_stride;
    const bool bonus = a == k;
    const int64_t token = bonus ? -1 : in.draft_token_ids[d0 + a];
    const Q* q_row = !bonus && draft_probs != nullptr ? draft_probs + (d0 + a) * in.draft_stride : nullptr;
    ArgMax best_p{-INFINITY, in.vocab}, best_w{-INFINITY, in.vocab};
    int any_residual = 0;
    for_each_group4(row, in.vocab, [&](int64_t g, const float (&x)[4], int count) {
      const Philox4 bits = philox_draw(seed, offset, RngPurpose::kVerifyRace, static_cast<uint32_t>(a),
                                       static_cast<uint32_t>(g));
      for (int e = 0; e < count; ++e) {
        const int64_t v = 4 * g + e;
        const float s = x[e] / temperature;
        const float p = s >= st.cut ? expf(s - st.scaled_max) / st.sum : 0.0f;
        best_p = better(best_p, ArgMax{race_key(logf(p), bits.v[e]), v});
        if (!bonus) {
          const float q = q_row != nullptr ? to_float(q_row[v]) : (v == token ? 1.0f : 0.0f);
          const float w = fmaxf(p - q, 0.0f);
          if (w > 0.0f) {
            any_residual = 1;
            best_w = better(best_w, ArgMax{race_key(logf(w), bits.v[e]), v});
          }
        }
      }
    });
    any_residual = __syncthreads_or(any_residual);
    best_p = block_argmax(best_p, sc.arg_max);
    best_w = block_argmax(best_w, sc.arg_max);
    chosen = !bonus && any_residual ? best_w.index : best_p.index;
    if (chosen >= in.vocab) chosen = st.argmax;  // nothing kept (scaled logits overflowed): greedy
  }
  int64_t* ids = out.out_ids + b * out.width;
  for (int64_t j = threadIdx.x; j < out.width; j += blockDim.x) {
    ids[j] = j < a ? in.draft_token_ids[d0 + j] : (j == a ? chosen : -1);
  }
  if (threadIdx.x == 0) out.num_accepted[b] = a;
}

template <typename T>
void launch_requests(const VerifyInputs& in, const SamplingParams& params, const VerifyRowStats* stats,
                     const VerifyOutputs& out, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(in.batch);
  if (in.draft_probs == nullptr) {
    verify_requests_kernel<T, float><<<blocks, kVerifyThreads, 0, stream>>>(in, params, stats, out);
  } else {
    A1_DISPATCH_FLOAT(in.draft_kind, {
      verify_requests_kernel<T, scalar_t><<<blocks, kVerifyThreads, 0, stream>>>(in, params, stats, out);
    });
  }
}

}  // namespace

int64_t verify_workspace_bytes(int64_t rows) { return rows * static_cast<int64_t>(sizeof(VerifyRowStats)); }

LaunchStatus launch_speculative_verify(const VerifyInputs& in, const SamplingParams& params, void* workspace,
                                       const VerifyOutputs& out, cudaStream_t stream) {
  if (in.batch == 0) return 0;
  auto* stats = static_cast<VerifyRowStats*>(workspace);
  A1_DISPATCH_FLOAT(in.target_kind, {
    verify_rows_kernel<scalar_t><<<static_cast<unsigned>(in.rows), kVerifyThreads, 0, stream>>>(
        in, params, stats, out.target_logprob);
    launch_requests<scalar_t>(in, params, stats, out, stream);
  });
  return static_cast<LaunchStatus>(cudaGetLastError());
}

}  // namespace a1::cuda
