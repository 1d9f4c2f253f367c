"""A distilled draft on disk (written by `a1 distill-draft`, read by a1.LLM(target, draft=DIR)):

    DIR/a1_draft.json      the marker: format, the target it was distilled from (name, shape and a
                           probe of its weights), the layer count, how it was made and measured
    DIR/config.json        the draft's architecture (the target's, num_hidden_layers = its own)
    DIR/model.safetensors  its layers and final norm, named as in a transformers checkpoint

The embedding and the LM head are the target's (frozen in training, shared at load: no copy), so a
directory is useless without the very target it was made for: loading it with another refuses.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

import torch

from a1_ext.quant_formats import is_quantized, quant_shape

from .draft_model import DraftLM, new_layers_draft
from .layers import dense_weight
from .weights import expected_tensors

FORMAT = "a1-distilled-draft/1"
MARKER = "a1_draft.json"  # the file that makes a directory a distilled draft
SHARED = ("model.embed_tokens.weight", "lm_head.weight")  # the target's; never saved with the draft
SHAPE_FIELDS = ("arch", "vocab_size", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads", "head_dim",
                "attention_bias", "o_proj_bias", "mlp_bias", "tie_word_embeddings")
PROBE_VALUES = 16  # values sampled per parameter tensor
PROBE_TOLERANCE = 0.02  # relative L2 distance per tensor: bf16 rounding is ~0.003, another checkpoint ~1


def weights_probe(model: torch.nn.Module, count: int = PROBE_VALUES) -> dict[str, list[float]]:
    """`count` evenly spaced values of every parameter, read in the [N, K] coordinates whatever the
    storage (panels [N / 16, K, 16] and GGUF blocks included: layers.dense_weight), so that the same
    checkpoint gives the same probe in float32, bfloat16 or quantized, packed or not."""
    probe = {}
    for name, param in sorted(model.named_parameters()):
        matrix = param.view(-1, 1) if param.dim() == 1 else param
        rows, cols = _matrix_shape(matrix)
        flat = _spaced(rows * cols, count)
        with torch.no_grad():
            values = dense_weight(matrix, flat // cols)[torch.arange(len(flat)), flat % cols]
        probe[name] = [float(v) for v in values.float()]
    return probe


def _matrix_shape(weight: torch.Tensor) -> tuple[int, int]:
    """[N, K] of a weight stored as [N, K], panels [N / 16, K, 16], GGUF blocks or their packed panels."""
    if is_quantized(weight):
        return quant_shape(weight)
    if weight.dim() == 3:
        return weight.shape[0] * weight.shape[2], weight.shape[1]
    return weight.shape[0], weight.shape[1]


def _spaced(total: int, count: int) -> torch.Tensor:
    """count evenly spaced indices in [0, total), first and last included (integer arithmetic:
    float32 linspace rounds past the end of a 28M-element tensor)."""
    if count <= 1 or total <= 1:
        return torch.zeros(1, dtype=torch.int64)
    return torch.arange(count, dtype=torch.int64) * (total - 1) // (count - 1)


def probe_mismatch(expected: dict[str, list[float]], model: torch.nn.Module) -> Optional[str]:
    """None when model's weights match the probe, else the first differing tensor's name."""
    got = weights_probe(model, len(next(iter(expected.values()), [])) or PROBE_VALUES)
    if sorted(got) != sorted(expected):
        return f"its parameters are named differently ({len(got)} vs {len(expected)} tensors)"
    for name in sorted(expected):
        a, b = torch.tensor(got[name]), torch.tensor(expected[name])
        scale = max(float(b.norm()), 1e-12)
        if not float((a - b).norm()) / scale <= PROBE_TOLERANCE:
            return f"its weights differ ({name})"
    return None


def shape_of(config) -> dict[str, Any]:
    return {name: getattr(config, name) for name in SHAPE_FIELDS}


def draft_tensors(draft: DraftLM) -> dict[str, torch.Tensor]:
    """The draft's own tensors by checkpoint name, [N, K] layout, contiguous copies (its layers are
    laid out as [N, K] for the read and put back as they were)."""
    panels = draft.use_weight_panels(False) > 0
    try:
        plan = expected_tensors(draft)
        return {name: t.detach().contiguous().clone() for name, t in plan.items() if name not in SHARED}
    finally:
        if panels:
            draft.use_weight_panels(True)


def save_distilled_draft(out: Path, draft: DraftLM, target, target_name: str, info: dict) -> Path:
    """Write DIR (see the module's doc) for `draft`, distilled from `target` (a LoadedModel)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(draft_tensors(draft), str(out / "model.safetensors"), metadata={"format": FORMAT})
    config = {"model_type": draft.config.arch, "num_hidden_layers": draft.config.num_layers,
              "hidden_size": draft.config.hidden_size, "intermediate_size": draft.config.intermediate_size,
              "num_attention_heads": draft.config.num_heads, "num_key_value_heads": draft.config.num_kv_heads,
              "head_dim": draft.config.head_dim, "vocab_size": draft.config.vocab_size,
              "rms_norm_eps": draft.config.rms_norm_eps, "note": "layers only: embedding and LM head are the target's"}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    marker = {"format": FORMAT, "target": target_name, "target_shape": shape_of(target.config),
              "target_num_layers": target.config.num_layers, "num_layers": draft.config.num_layers,
              "target_probe": weights_probe(target.model), **info}
    (out / MARKER).write_text(json.dumps(marker, indent=1, default=_json_default) + "\n")
    return out


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def read_marker(path: Path) -> dict:
    from .config import read_json_object

    marker = read_json_object(Path(path) / MARKER)
    if marker.get("format") != FORMAT:
        raise ValueError(f"{path}: {MARKER} has format {marker.get('format')!r}; this a1 reads {FORMAT!r}")
    return marker


def load_distilled_draft(path: Path, target, name: str = "draft") -> DraftLM:
    """The DraftLM of DIR over `target` (a LoadedModel); ValueError naming `name` when DIR was made
    for another target (shape or weights) or is incomplete."""
    from safetensors.torch import load_file

    path = Path(path)
    marker = read_marker(path)
    made_for = marker.get("target", "?")
    if marker.get("target_shape") != shape_of(target.config) or marker.get("target_num_layers") != target.config.num_layers:
        raise ValueError(f"{name}: {path} was distilled for target {made_for!r} of another architecture "
                         f"({marker.get('target_num_layers')} layers, {marker.get('target_shape')}), not for this one "
                         f"({target.config.num_layers} layers, {shape_of(target.config)})")
    mismatch = probe_mismatch(marker.get("target_probe") or {}, target.model)
    if mismatch is not None:
        raise ValueError(f"{name}: {path} was distilled for target {made_for!r}, not for {target.source!r}: {mismatch}; "
                         "distill a draft for this target with `a1 distill-draft`")
    draft = new_layers_draft(target.model, int(marker["num_layers"]))
    tensors = load_file(str(path / "model.safetensors"))
    plan = {k: v for k, v in expected_tensors(draft).items() if k not in SHARED}
    missing = sorted(set(plan) - set(tensors))
    if missing:
        raise ValueError(f"{name}: {path}/model.safetensors lacks {missing[:4]}")
    with torch.no_grad():
        for key, dest in plan.items():
            if tuple(tensors[key].shape) != tuple(dest.shape):
                raise ValueError(f"{name}: {path}: {key} has shape {tuple(tensors[key].shape)}, expected {tuple(dest.shape)}")
            dest.copy_(tensors[key])
    draft.eval()
    if target.model.layers and target.model.layers[0].attention.qkv_weight.dim() == 3:
        draft.use_weight_panels()  # the target's layout: a1's fp32 CPU kernel
    from .huge_pages import pack_parameters

    if target.model.device.type == "cpu":
        pack_parameters(torch.nn.ModuleList([*draft.layers, draft.norm]))  # its own weights only
    return draft
