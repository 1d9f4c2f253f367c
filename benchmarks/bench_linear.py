"""a1::linear against its twin (F.linear, torch's BLAS) over every weight matrix of SmolLM2-135M,
as one decode step reads them: 30 layers x (qkv, o, gate_up, down) + the LM head, 538 MB of fp32
weights packed in one huge-page arena like a1's loader packs them. T = token rows per step (batch).
impl: `panels` = a1's kernel on weight panels [N / 16, K, 16] (how load_model lays out fp32
models), `rows` = a1's kernel on [N, K] weights (BLAS above 32 rows), `twin` = F.linear on [N, K];
`bf16` = a1's 16-bit kernel on the same weights in bf16 (how load_model lays out a bf16 model; torch's
matmul above 8 rows), `bf16_twin` = F.linear on them (torch's bf16 matmul).

Run: pytest benchmarks/bench_linear.py --benchmark-enable --benchmark-columns=median,iqr,rounds
"""
import pytest
import torch

import a1_ext  # noqa: F401
from a1.models.huge_pages import pack_parameters
from a1_ext import ops, reference

HIDDEN, INTERMEDIATE, LAYERS, VOCAB = 576, 1536, 30, 49152  # SmolLM2-135M
LAYER_SHAPES = [(960, HIDDEN), (HIDDEN, HIDDEN), (2 * INTERMEDIATE, HIDDEN), (HIDDEN, INTERMEDIATE)]


@pytest.fixture(scope="module")
def step_weights() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = LAYER_SHAPES * LAYERS + [(VOCAB, HIDDEN)]
    params = torch.nn.ParameterList(
        torch.nn.Parameter(torch.randn(shape, generator=g) / shape[1] ** 0.5, requires_grad=False) for shape in shapes
    )
    pack_parameters(params)
    return list(params)


@pytest.fixture(scope="module")
def step_weight_panels(step_weights) -> list[torch.Tensor]:
    params = torch.nn.ParameterList(
        torch.nn.Parameter(ops.to_weight_panels(w), requires_grad=False) for w in step_weights
    )
    pack_parameters(params)
    return list(params)


@pytest.fixture(scope="module")
def step_weights_bf16(step_weights) -> list[torch.Tensor]:
    params = torch.nn.ParameterList(torch.nn.Parameter(w.bfloat16(), requires_grad=False) for w in step_weights)
    pack_parameters(params)
    return list(params)


@pytest.mark.parametrize("tokens", [1, 4, 8, 32, 256])
@pytest.mark.parametrize("impl", ["panels", "rows", "twin", "bf16", "bf16_twin"])
def test_linear_decode_step(benchmark, step_weights, step_weight_panels, step_weights_bf16, tokens, impl):
    g = torch.Generator().manual_seed(tokens)
    dtype = torch.bfloat16 if impl.startswith("bf16") else torch.float32
    inputs = {k: torch.randn(tokens, k, generator=g).to(dtype) for k in (HIDDEN, INTERMEDIATE)}
    fn = reference.linear if impl.endswith("twin") else ops.linear
    weights = {"panels": step_weight_panels, "bf16": step_weights_bf16, "bf16_twin": step_weights_bf16}.get(
        impl, step_weights)

    def step() -> None:
        for weight in weights:
            fn(inputs[weight.shape[1]], weight)

    benchmark.group = f"linear: all SmolLM2-135M weights, T={tokens}"
    weight_bytes = sum(w.numel() * w.element_size() for w in weights)
    benchmark.extra_info["weight_MB"] = weight_bytes / 1e6
    benchmark.pedantic(step, rounds=15, warmup_rounds=2)
    benchmark.extra_info["GB_per_s"] = weight_bytes / benchmark.stats.stats.median / 1e9
