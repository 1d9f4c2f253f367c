// The temperature below which `sample` and `speculative_verify` pick the first argmax instead of
// drawing: one constant for the CPU kernels, the CUDA kernels and (as GREEDY_TEMPERATURE) the
// twins in a1_ext/reference.py. Torch-free and CUDA-free, so every side can include it.
#pragma once

namespace a1 {

// Temperatures in [0, 1e-5) are greedy. Below it logits / temperature leaves float's range for
// ordinary logits (at 1e-38 a logit of 4 is inf) and the race would draw garbage; at 1e-5 a logit
// gap of 1e-3 already weighs e^-100, so the draw is the argmax up to exact ties anyway.
constexpr float kGreedyTemperature = 1e-5f;

}  // namespace a1
