"""benchmarks/synthetic_gguf.py and decode_bound.py on a tiny shape: the file a1 loads with its
blocks kept (Q4_0 layers, Q8_0 tied embedding) and runs to finite logits, the tokenizer metadata
copied from the source file, the same bytes for the same seed, and the bytes a decode step reads
counted from the shape by hand. The 4-token tokenizer of tests/a1/models/tiny_gguf.py stands in for
SmolLM2's, so that the test needs neither the SmolLM2 package nor llama.cpp."""
from __future__ import annotations

import sys
from pathlib import Path

import gguf
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests" / "a1" / "models"))
from decode_bound import decode_bytes_per_token  # noqa: E402
from synthetic_gguf import Shape, write_synthetic_gguf  # noqa: E402
from tiny_gguf import TOKENS, write_tokenizer_gguf  # noqa: E402

from a1.distill.forward import prefill_hidden  # noqa: E402
from a1.models.loader import load_model  # noqa: E402
from a1_ext.quant_formats import quant_format, quant_shape  # noqa: E402

SHAPE = Shape(hidden=64, layers=2, heads=4, kv_heads=2, ffn=128, context=128)
VOCAB = 8  # embedding rows: the 4 tokens and the <|endoftext|> transformers' conversion adds, padded
Q4_0, Q8_0 = 18 / 32, 34 / 32  # bytes per weight: a block of 32 weights and one fp16 scale


def test_a_tiny_synthetic_file_loads_quantized_runs_and_counts_its_bytes(tmp_path: Path) -> None:
    source = write_tokenizer_gguf(tmp_path / "tokenizer.gguf")
    path = write_synthetic_gguf(tmp_path / "synthetic.gguf", SHAPE, tokenizer_source=source, seed=1, vocab=VOCAB)

    fields = gguf.GGUFReader(str(path)).fields
    assert fields["tokenizer.ggml.tokens"].contents() == TOKENS
    assert fields["tokenizer.ggml.eos_token_id"].contents() == 3

    model = load_model(path).model
    kv = SHAPE.kv_heads * SHAPE.head_dim
    assert model.embed_weight.dtype == torch.uint8 and tuple(model.embed_weight.shape) == (VOCAB, 2, 34)
    layer = model.layers[0]
    for weight, shape in [(layer.attention.qkv_weight, (SHAPE.hidden + 2 * kv, SHAPE.hidden)),
                          (layer.mlp.down_weight, (SHAPE.hidden, SHAPE.ffn))]:  # Q4_0 blocks kept (packed or not)
        assert quant_format(weight).name == "Q4_0" and quant_shape(weight) == shape
    assert model.lm_head is None  # tied: the head is the embedding
    with torch.inference_mode():
        logits = model.compute_logits(prefill_hidden(model, [0, 1, 2, 3]))
    assert logits.shape == (4, VOCAB) and torch.isfinite(logits).all() and logits.std() > 0

    layers = SHAPE.layers * (2 * SHAPE.hidden * SHAPE.hidden + 2 * kv * SHAPE.hidden + 3 * SHAPE.ffn * SHAPE.hidden)
    norms = (2 * SHAPE.layers + 1) * SHAPE.hidden * 4
    embedding = VOCAB * SHAPE.hidden * Q8_0  # in full: it is the LM head
    assert decode_bytes_per_token(path) == {"weights": layers * Q4_0 + norms, "embedding": embedding,
                                            "total": layers * Q4_0 + norms + embedding}
    assert SHAPE.parameters(VOCAB) == layers + VOCAB * SHAPE.hidden + norms // 4

    again = write_synthetic_gguf(tmp_path / "again.gguf", SHAPE, tokenizer_source=source, seed=1, vocab=VOCAB)
    assert again.read_bytes() == path.read_bytes()  # seeded
