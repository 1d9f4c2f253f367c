"""Fill a DecoderLM from tensors named as in a transformers checkpoint (q/k/v and gate/up are
stacked into the fused weights here). Missing tensors and shape mismatches raise ValueError."""
from __future__ import annotations

from typing import Mapping

import torch

from .base import DecoderLM

_LIST_LIMIT = 8


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _LIST_LIMIT else "")


def expected_tensors(model: DecoderLM) -> dict[str, torch.Tensor]:
    """checkpoint tensor name -> the parameter (or the slice of a fused parameter) it fills."""
    config = model.config
    head, kv_width = config.head_dim, config.num_kv_heads * config.head_dim
    q_width, inter = config.num_heads * head, config.intermediate_size
    plan: dict[str, torch.Tensor] = {"model.embed_tokens.weight": model.embed_weight}
    for index, layer in enumerate(model.layers):
        prefix = f"model.layers.{index}."
        attn, mlp = layer.attention, layer.mlp
        plan[prefix + "input_layernorm.weight"] = layer.input_norm.weight
        plan[prefix + "post_attention_layernorm.weight"] = layer.post_attention_norm.weight
        qkv_rows = {
            "q_proj": (0, q_width),
            "k_proj": (q_width, q_width + kv_width),
            "v_proj": (q_width + kv_width, q_width + 2 * kv_width),
        }
        for name, (start, stop) in qkv_rows.items():
            plan[f"{prefix}self_attn.{name}.weight"] = attn.qkv_weight[start:stop]
            if attn.qkv_bias is not None:
                plan[f"{prefix}self_attn.{name}.bias"] = attn.qkv_bias[start:stop]
        plan[prefix + "self_attn.o_proj.weight"] = attn.o_weight
        if attn.o_bias is not None:
            plan[prefix + "self_attn.o_proj.bias"] = attn.o_bias
        for name, (start, stop) in {"gate_proj": (0, inter), "up_proj": (inter, 2 * inter)}.items():
            plan[f"{prefix}mlp.{name}.weight"] = mlp.gate_up_weight[start:stop]
            if mlp.gate_up_bias is not None:
                plan[f"{prefix}mlp.{name}.bias"] = mlp.gate_up_bias[start:stop]
        plan[prefix + "mlp.down_proj.weight"] = mlp.down_weight
        if mlp.down_bias is not None:
            plan[prefix + "mlp.down_proj.bias"] = mlp.down_bias
    plan["model.norm.weight"] = model.norm.weight
    if model.lm_head is not None:
        plan["lm_head.weight"] = model.lm_head
    return plan


@torch.no_grad()
def load_hf_weights(model: DecoderLM, tensors: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy every tensor the model needs from `tensors` (values are read lazily, one at a time, and
    cast to the model dtype). Extra tensors (rotary inv_freq, a tied lm_head) are ignored."""
    plan = expected_tensors(model)
    missing = [name for name in plan if name not in tensors]
    if missing:
        hint = ""
        if "lm_head.weight" in missing and len(missing) == 1:
            hint = " (the config says tie_word_embeddings=false but the checkpoint has no lm_head)"
        raise ValueError(f"{source} is missing tensors{hint}: {_listing(missing)}")
    for name, target in plan.items():
        tensor = tensors[name]
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(
                f"{source}: shape mismatch for {name}: checkpoint has {tuple(tensor.shape)}, "
                f"the config implies {tuple(target.shape)}"
            )
        target.copy_(tensor)
