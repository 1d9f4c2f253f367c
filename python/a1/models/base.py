"""The model the engine drives: DecoderLM (Llama and Qwen2 families; Qwen2 is Llama with a bias on
the q/k/v projections) over the paged KV cache described by AttentionMetadata."""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from a1_ext import ops
from a1_ext.quant_formats import is_quantized

from .attention_metadata import AttentionMetadata
from .config import ModelConfig
from .layers import DecoderLayer, RMSNorm, relayout_weight
from .rope import RotaryEmbedding

__all__ = ["AttentionMetadata", "DecoderLM", "ModelConfig"]

KVCache = tuple[torch.Tensor, torch.Tensor]


class DecoderLM(torch.nn.Module):
    """A decoder-only LM over the paged KV cache. Parameters never require grad; run it under
    torch.inference_mode(). Weights are filled by a1.models.weights.load_hf_weights."""

    def __init__(self, config: ModelConfig, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"model dtype must be float32, bfloat16 or float16, got {dtype}")
        self.config = config
        vocab, hidden = config.vocab_size, config.hidden_size
        self.embed_weight = torch.nn.Parameter(torch.empty(vocab, hidden, dtype=dtype), requires_grad=False)
        self.layers = torch.nn.ModuleList(DecoderLayer(config, dtype) for _ in range(config.num_layers))
        self.norm = RMSNorm(hidden, config.rms_norm_eps, dtype)
        self.lm_head: Optional[torch.nn.Parameter] = None
        if not config.tie_word_embeddings:
            self.lm_head = torch.nn.Parameter(torch.empty(vocab, hidden, dtype=dtype), requires_grad=False)
        self.rotary = RotaryEmbedding(config, dtype)

    @property
    def dtype(self) -> torch.dtype:
        """The activations' (and KV cache's) dtype: float32 for a model with GGUF block weights."""
        return self.norm.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.embed_weight.device

    @property
    def lm_head_weight(self) -> torch.Tensor:
        """[V, hidden], its panels [V / 16, hidden, 16] or its GGUF blocks (a1_ext.quant_formats): the
        output projection (the embedding when tied)."""
        return self.embed_weight if self.lm_head is None else self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor,
        positions: torch.Tensor,
        kv_caches: Sequence[KVCache],
        meta: AttentionMetadata,
    ) -> torch.Tensor:
        """Hidden states after the final norm, [T, hidden] in the model dtype, for the flattened
        tokens input_ids/positions (int64 [T]); writes their K/V into kv_caches (one per layer).
        Positions must be below config.max_position_embeddings (dynamic NTK RoPE excepted)."""
        if len(kv_caches) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} (k_cache, v_cache) pairs, got {len(kv_caches)}")
        cos, sin = self.rotary(positions, meta.seq_lens, meta.query_start_loc)
        residual = self.embed(input_ids)  # a fresh tensor: the layers update it in place
        if not self.layers:
            return self.norm(residual)
        hidden = torch.zeros_like(residual)  # the first layer's residual add is then a no-op
        # Every layer in one op (ops.decoder_layer, layer by layer): no Python between layers.
        weights = zip(*(layer.weights() for layer in self.layers))  # ten lists, one entry per layer
        first = self.layers[0]
        hidden = ops.decoder_layers(
            residual, hidden, *weights, cos, sin, [k for k, _ in kv_caches], [v for _, v in kv_caches],
            meta.slot_mapping, meta.block_table, meta.seq_lens, meta.query_start_loc,
            first.input_norm.eps, first.attention.scale,
        )
        return self.norm(hidden, residual)[0]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding rows of input_ids, [T, hidden] (a new tensor)."""
        weight = self.embed_weight
        if is_quantized(weight):  # GGUF blocks: only the rows read are decoded
            return ops.dequantize(weight, input_ids).to(self.dtype)
        if weight.dim() == 3:  # the panels of a tied LM head: row v is weight[v // 16, :, v % 16]
            return weight[input_ids // ops.LINEAR_PANEL_WIDTH, :, input_ids % ops.LINEAR_PANEL_WIDTH]
        return F.embedding(input_ids, weight)

    def _apply(self, fn, recurse=True):
        module = super()._apply(fn, recurse)
        if any(is_quantized(p) for p in self.parameters()):
            # The block weights move as they are (uint8); a1 has kernels for them on the CPU and CUDA
            # (dequantize, quant_linear), which take float32 activations only.
            if self.device.type not in ("cpu", "cuda"):
                raise NotImplementedError(
                    f"a model with GGUF block weights runs on the CPU or a CUDA GPU, not on {self.device.type}: "
                    "load the .gguf with dtype=torch.float16, torch.bfloat16 or torch.float32 for other devices")
            if self.dtype != torch.float32:
                raise NotImplementedError(
                    f"a model with GGUF block weights computes in float32, not {self.dtype}: load the .gguf with "
                    "dtype=torch.float16 or torch.bfloat16 to run dequantized weights in that dtype")
            if self.device.type != "cpu":
                self.use_quant_panels(False)  # packed panels are a CPU layout: the CUDA kernels read blocks
        # Panels are the layout of a1's CPU fp32 kernel only: after a move to a GPU or a cast, give
        # a1's 16-bit CPU kernel, BLAS and cuBLAS their [N, K] back rather than a batched product per weight.
        if self.device.type != "cpu" or self.dtype != torch.float32:
            self.use_weight_panels(False)
        return module

    def use_weight_panels(self, enable: bool = True) -> int:
        """Every layer's projection weights and the LM head (shared with the embedding when tied) as
        panels [N / 16, K, 16] (enable; a1's CPU fp32 kernel) or [N, K] (BLAS, cuBLAS); see
        DecoderLayer.use_weight_panels. Call after the weights are loaded (load_model does for
        float32); the forward is the same either way. Returns how many weights changed layout."""
        changed = sum(layer.use_weight_panels(enable) for layer in self.layers)
        return changed + relayout_weight(self, "embed_weight" if self.lm_head is None else "lm_head", enable)

    def use_quant_panels(self, enable: bool = True) -> int:
        """Every layer's Q4_0 / Q4_1 / Q8_0 projection weights as packed panels (enable; a1's CPU int8
        kernels, 1.2-2.5x the GGUF layout's speed at batch 1) or as GGUF blocks (the CUDA kernels);
        see DecoderLayer.use_quant_panels. load_model packs them where the CPU runs the panel kernels
        (a1_ext.quant_panels.int8_panels_supported). The embedding and LM head stay blocks (embedding
        rows are decoded one by one; linear_step_score reads blocks). Returns how many changed."""
        return sum(layer.use_quant_panels(enable) for layer in self.layers)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 [T, V] logits of hidden states [T, hidden]."""
        return ops.any_linear(hidden, self.lm_head_weight).float()

    def kv_cache_shape(self, num_blocks: int, block_size: int) -> tuple[int, int, int, int]:
        """Shape of one layer's k_cache (and v_cache)."""
        return (num_blocks, block_size, self.config.num_kv_heads, self.config.head_dim)

    def bytes_per_token(self, dtype: Optional[torch.dtype] = None) -> int:
        """KV bytes one token takes over all layers: 2 * layers * kv_heads * head_dim * element size."""
        element = torch.empty((), dtype=dtype or self.dtype).element_size()
        return 2 * self.config.num_layers * self.config.num_kv_heads * self.config.head_dim * element
