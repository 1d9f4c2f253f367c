"""A tiny random decoder honouring the DecoderLM interface (a1.models.base), with attention on the
real a1_ext paged ops, plus a dense no-cache forward as the reference, and a character tokenizer."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from a1_ext import ops


@dataclass
class FakeConfig:
    arch: str = "fake"
    vocab_size: int = 48
    hidden_size: int = 32
    intermediate_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 8
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: Optional[dict] = None
    max_position_embeddings: int = 512
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    bos_token_id: int = 0
    eos_token_ids: list[int] = field(default_factory=lambda: [1])


@dataclass
class Loaded:
    """A loaded model as a1.LLM takes it (the fields of a1.models.loader.LoadedModel)."""

    model: object
    tokenizer: object
    config: object
    source: str = "fake"


class TinyLM(torch.nn.Module):
    def __init__(self, config: Optional[FakeConfig] = None, seed: int = 0, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = c = config or FakeConfig()
        g = torch.Generator().manual_seed(seed)

        def w(*shape: int, scale: float = 1.0) -> torch.nn.Parameter:
            return torch.nn.Parameter((torch.randn(*shape, generator=g) * scale / math.sqrt(shape[-1])).to(dtype))

        h, d = c.hidden_size, c.head_dim
        self.embed = torch.nn.Parameter(torch.randn(c.vocab_size, h, generator=g).to(dtype))
        self.layers = torch.nn.ModuleList()
        for _ in range(c.num_layers):
            layer = torch.nn.Module()
            layer.wq, layer.wk = w(c.num_heads * d, h), w(c.num_kv_heads * d, h)
            layer.wv, layer.wo = w(c.num_kv_heads * d, h), w(h, c.num_heads * d)
            layer.w1, layer.w2 = w(c.intermediate_size, h), w(h, c.intermediate_size)
            self.layers.append(layer)
        self.lm_head = w(c.vocab_size, h, scale=4.0)  # peaked logits: greedy is stable, sampling varied
        self.requires_grad_(False)

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    @property
    def lm_head_weight(self) -> torch.Tensor:
        return self.lm_head

    def kv_cache_shape(self, num_blocks: int, block_size: int) -> tuple[int, ...]:
        return (num_blocks, block_size, self.config.num_kv_heads, self.config.head_dim)

    def bytes_per_token(self, dtype: Optional[torch.dtype] = None) -> int:
        c = self.config
        return c.num_layers * 2 * c.num_kv_heads * c.head_dim * torch.empty(0, dtype=dtype or self.dtype).element_size()

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.config.rms_norm_eps)

    def _rope(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        inv = 1.0 / (self.config.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
        ang = positions.float().unsqueeze(-1) * inv  # [T, d/2]
        cos, sin = ang.cos().unsqueeze(1), ang.sin().unsqueeze(1)
        x1, x2 = x[..., : d // 2].float(), x[..., d // 2 :].float()
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).to(x.dtype)

    def _layers(self, input_ids: torch.Tensor, positions: torch.Tensor, attend) -> torch.Tensor:
        c = self.config
        x = self.embed[input_ids]
        for i, layer in enumerate(self.layers):
            h = self._norm(x)
            q = self._rope((h @ layer.wq.T).view(-1, c.num_heads, c.head_dim), positions)
            k = self._rope((h @ layer.wk.T).view(-1, c.num_kv_heads, c.head_dim), positions)
            v = (h @ layer.wv.T).view(-1, c.num_kv_heads, c.head_dim)
            x = x + attend(i, q, k, v).reshape(-1, c.num_heads * c.head_dim) @ layer.wo.T
            x = x + torch.nn.functional.silu(self._norm(x) @ layer.w1.T) @ layer.w2.T
        return self._norm(x)

    def forward(self, input_ids, positions, kv_caches, meta) -> torch.Tensor:
        scale = 1.0 / math.sqrt(self.config.head_dim)

        def attend(i, q, k, v):
            k_cache, v_cache = kv_caches[i]
            ops.reshape_and_cache(k, v, k_cache, v_cache, meta.slot_mapping)
            return ops.paged_attention(q, k_cache, v_cache, meta.block_table, meta.seq_lens, meta.query_start_loc, scale)

        return self._layers(input_ids, positions, attend)

    def forward_dense(self, input_ids: list[int]) -> torch.Tensor:
        """Reference: hidden states of the whole sequence without any cache."""
        c = self.config
        group = c.num_heads // c.num_kv_heads

        def attend(i, q, k, v):
            k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
            out = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), is_causal=True
            )
            return out.transpose(0, 1)

        ids = torch.tensor(input_ids, dtype=torch.int64)
        return self._layers(ids, torch.arange(len(input_ids)), attend)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return (hidden @ self.lm_head.T).float()

    def dense_logprobs(self, input_ids: list[int]) -> torch.Tensor:
        """log_softmax of the full forward's logits: row p predicts token p + 1."""
        return torch.log_softmax(self.compute_logits(self.forward_dense(input_ids)), -1)

    def greedy_reference(self, prompt: list[int], max_tokens: int, stop_ids: tuple[int, ...] = ()) -> list[int]:
        ids = list(prompt)
        for _ in range(max_tokens):
            ids.append(int(self.compute_logits(self.forward_dense(ids)[-1:]).argmax()))
            if ids[-1] in stop_ids:
                break
        return ids[len(prompt) :]


class FakeTokenizer:
    """Token i decodes to pieces[i]; ids 0 (bos) and 1 (eos) are special."""

    def __init__(self, vocab_size: int = 48, pieces: Optional[dict[int, str]] = None):
        alphabet = "abcdefghijklmnopqrstuvwxyz .,!?\n0123456789ABCDEFGHIJ"
        self.pieces = {0: "<s>", 1: "</s>"} | {i: alphabet[(i - 2) % len(alphabet)] for i in range(2, vocab_size)}
        self.pieces.update(pieces or {})
        self.vocab_size, self.eos_token_ids, self.bos_token_id = vocab_size, [1], 0

    def id_to_token(self, token_id: int) -> Optional[str]:
        return self.pieces.get(token_id)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        lookup = {}
        for i, piece in sorted(self.pieces.items(), reverse=True):
            lookup[piece] = i
        return ([0] if add_special_tokens else []) + [lookup[ch] for ch in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(self.pieces[i] for i in ids if not (skip_special_tokens and i in (0, 1)))

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        text = "".join(f"{m['role'][0]}.{m['content']}\n" for m in messages)
        return text + ("a." if add_generation_prompt else "")
