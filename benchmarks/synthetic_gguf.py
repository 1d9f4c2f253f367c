"""A synthetic 1.5B-shaped llama GGUF for decode-speed benchmarks: random weights (seeded), every
layer matmul in Q4_0 and the tied token embedding in Q8_0 (as the bundled SmolLM2 GGUF has it),
norms F32 = 1, and SmolLM2's tokenizer metadata copied over so that a1 and llama.cpp both load it.

Shape (SHAPE_1P5B): Qwen2.5-1.5B's body (hidden 1536, 28 layers, 12 query / 2 KV heads of 128,
FFN 8960) on SmolLM2's 49152-token vocabulary, embedding tied as in Qwen2.5-1.5B: 1.39e9 parameters
(1.31e9 in the layers, 75.5e6 in the embedding), about 780 MiB on disk. Only the speed of the
weights matters here, not their values; normal * 0.02 keeps the activations finite. The blocks are the
gguf package's own quantization of those normals (gguf.quants.quantize, vectorized numpy: the whole
file takes ~40 s on 2 cores, so there is no need to write random blocks directly).

Usage: python benchmarks/synthetic_gguf.py [--cache-dir runs/synthetic] [--seed 0]
(writes the file if it is not cached yet, prints its path, size and the bytes a decode step reads)
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

# The repository's runs/ (ignored by git), whatever the working directory.
CACHE_DIR = Path(__file__).resolve().parents[1] / "runs" / "synthetic"
ROWS_PER_CHUNK = 2048  # rows drawn and quantized at once: float32 scratch of 12 MiB at K=1536, 70 at K=8960


@dataclass(frozen=True)
class Shape:
    hidden: int = 1536
    layers: int = 28
    heads: int = 12
    kv_heads: int = 2
    ffn: int = 8960
    context: int = 8192
    rope_theta: float = 1e6

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def matrices(self, vocab: int) -> list[tuple[str, int, int]]:
        """(GGUF name, rows N, columns K) of every 2-D weight, in llama.cpp's file order."""
        kv = self.kv_heads * self.head_dim
        out = [("token_embd.weight", vocab, self.hidden)]
        for i in range(self.layers):
            out += [(f"blk.{i}.attn_q.weight", self.hidden, self.hidden), (f"blk.{i}.attn_k.weight", kv, self.hidden),
                    (f"blk.{i}.attn_v.weight", kv, self.hidden), (f"blk.{i}.attn_output.weight", self.hidden, self.hidden),
                    (f"blk.{i}.ffn_gate.weight", self.ffn, self.hidden), (f"blk.{i}.ffn_up.weight", self.ffn, self.hidden),
                    (f"blk.{i}.ffn_down.weight", self.hidden, self.ffn)]
        return out

    def parameters(self, vocab: int) -> int:
        return sum(n * k for _, n, k in self.matrices(vocab)) + (2 * self.layers + 1) * self.hidden

    def tag(self) -> str:
        return f"h{self.hidden}-l{self.layers}-a{self.heads}-kv{self.kv_heads}-f{self.ffn}"


SHAPE_1P5B = Shape()


def smollm2_path() -> Path:
    from a1.models.registry import BUILTIN_MODELS

    return BUILTIN_MODELS["smollm2-135m"].find()


def tokenizer_fields(source: Path) -> list[tuple[str, Any, Any, Any]]:
    """(key, value, type, array element type) of every tokenizer.* key of a GGUF file."""
    import gguf

    fields = []
    for key, field in gguf.GGUFReader(str(source)).fields.items():
        if key.startswith("tokenizer."):
            vtype = gguf.GGUFValueType(field.types[0])
            sub = gguf.GGUFValueType(field.types[1]) if vtype == gguf.GGUFValueType.ARRAY else None
            fields.append((key, field.contents(), vtype, sub))
    return fields


def _quantized(rng: np.random.Generator, rows: int, cols: int, qtype: Any) -> np.ndarray:
    """Raw blocks uint8 [rows, row bytes] of a normal * 0.02 matrix, quantized by the gguf package
    (the reference Q4_0 / Q8_0 rounding), a chunk of rows at a time."""
    import gguf

    parts = []
    for start in range(0, rows, ROWS_PER_CHUNK):
        chunk = rng.standard_normal((min(ROWS_PER_CHUNK, rows - start), cols), dtype=np.float32) * np.float32(0.02)
        parts.append(gguf.quants.quantize(chunk, qtype))
    return np.concatenate(parts)


def write_synthetic_gguf(path: Path, shape: Shape = SHAPE_1P5B, tokenizer_source: Optional[Path] = None,
                         seed: int = 0, vocab: Optional[int] = None) -> Path:
    """Write the synthetic model to `path` (a temporary name first, renamed when complete, so that an
    interrupted run never leaves a truncated file in the cache). Tensors are generated and written
    one at a time: memory stays at one tensor, not the model. vocab: embedding rows, by default the
    source's token count (more pads the embedding, as Qwen's 151936 rows do)."""
    import gguf

    fields = tokenizer_fields(tokenizer_source or smollm2_path())
    vocab = vocab or len(next(value for key, value, _, _ in fields if key == "tokenizer.ggml.tokens"))
    tmp = path.with_name(path.name + ".part")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(f"synthetic-{shape.tag()}")
    writer.add_block_count(shape.layers)
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(shape.rope_theta)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_vocab_size(vocab)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0)
    for key, value, vtype, sub in fields:
        writer.add_key_value(key, value, vtype, sub)

    # (name, rows, cols, type): cols None for the 1-D norms. No output.weight: the head is the embedding.
    plan: list[tuple[str, int, Optional[int], Any]] = []
    for name, rows, cols in shape.matrices(vocab):
        qtype = gguf.GGMLQuantizationType.Q8_0 if name == "token_embd.weight" else gguf.GGMLQuantizationType.Q4_0
        plan.append((name, rows, cols, qtype))
    plan += [(f"blk.{i}.{n}.weight", shape.hidden, None, gguf.GGMLQuantizationType.F32)
             for i in range(shape.layers) for n in ("attn_norm", "ffn_norm")]
    plan.append(("output_norm.weight", shape.hidden, None, gguf.GGMLQuantizationType.F32))
    for name, rows, cols, qtype in plan:
        if cols is None:
            writer.add_tensor_info(name, (rows,), np.dtype(np.float32), rows * 4)
        else:
            block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
            row_bytes = cols // block * block_bytes
            writer.add_tensor_info(name, (rows, row_bytes), np.dtype(np.uint8), rows * row_bytes, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for index, (name, rows, cols, qtype) in enumerate(plan):
        if cols is None:
            writer.write_tensor_data(np.ones(rows, dtype=np.float32))
        else:  # one generator per tensor: the file does not depend on the chunking
            writer.write_tensor_data(_quantized(np.random.default_rng([seed, index]), rows, cols, qtype))
    writer.close()
    os.replace(tmp, path)
    return path


def synthetic_gguf(cache_dir: Path = CACHE_DIR, shape: Shape = SHAPE_1P5B, seed: int = 0) -> Path:
    """The cached synthetic file of this shape and seed, written first if missing."""
    path = Path(cache_dir) / f"synthetic-{shape.tag()}-q4_0-s{seed}.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_synthetic_gguf(path, shape, seed=seed)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import gguf
    from decode_bound import decode_bytes_per_token

    path = synthetic_gguf(args.cache_dir, seed=args.seed)
    parameters = sum(int(t.n_elements) for t in gguf.GGUFReader(str(path)).tensors)
    counted = decode_bytes_per_token(path)
    print(f"{path}: {parameters / 1e9:.3f}e9 parameters, {path.stat().st_size / 2**20:.0f} MiB, "
          f"{counted['total'] / 2**20:.0f} MiB read per decode step")


if __name__ == "__main__":
    main()
