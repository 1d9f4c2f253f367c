"""ModelConfig: the architecture facts a decoder needs, read from an HF config.json or GGUF metadata."""
from __future__ import annotations

import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

SUPPORTED_ARCHS = ("llama", "qwen2")
# rope_type -> keys its parameters must carry (besides rope_type)
ROPE_TYPES: dict[str, tuple[str, ...]] = {
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "freq_factors": ("factors",),  # llama.cpp's rope_freqs tensor: inv_freq[i] / factors[i]
}


@dataclass
class ModelConfig:
    arch: str  # 'llama' | 'qwen2'
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: Optional[dict[str, Any]]  # None = plain RoPE; else {"rope_type": ..., parameters}
    max_position_embeddings: int
    tie_word_embeddings: bool
    attention_bias: bool  # bias on the q, k and v projections
    bos_token_id: Optional[int]
    eos_token_ids: list[int] = field(default_factory=list)
    o_proj_bias: bool = False  # Llama's attention_bias also puts a bias on o_proj
    mlp_bias: bool = False

    def __post_init__(self) -> None:
        if self.arch not in SUPPORTED_ARCHS:
            raise ValueError(f"unsupported architecture {self.arch!r}; supported: {', '.join(SUPPORTED_ARCHS)}")
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_layers", "num_heads", "num_kv_heads"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"config {name} must be positive, got {getattr(self, name)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.head_dim <= 0 or self.head_dim % 2:
            raise ValueError(f"head_dim must be positive and even, got {self.head_dim}")
        if self.rope_scaling is not None:
            rope_type = self.rope_scaling.get("rope_type")
            if rope_type not in ROPE_TYPES:
                raise ValueError(
                    f"unsupported RoPE scaling {rope_type!r}; supported: default, {', '.join(ROPE_TYPES)}"
                )
            missing = [key for key in ROPE_TYPES[rope_type] if key not in self.rope_scaling]
            if missing:
                raise ValueError(f"RoPE scaling {rope_type!r} lacks {', '.join(missing)}")

    @property
    def rope_type(self) -> str:
        return "default" if self.rope_scaling is None else self.rope_scaling["rope_type"]

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> "ModelConfig":
        """Parse a transformers config.json dict (4.x `rope_scaling` or 5.x `rope_parameters` style)."""
        model_type = cfg.get("model_type")
        if model_type not in SUPPORTED_ARCHS:
            raise ValueError(
                f"unsupported architecture: model_type {model_type!r} (architectures {cfg.get('architectures')}); "
                f"supported: {', '.join(SUPPORTED_ARCHS)}"
            )
        act = cfg.get("hidden_act", "silu")
        if act != "silu":
            raise ValueError(f"unsupported hidden_act {act!r}: only SwiGLU (silu) MLPs are implemented")
        if model_type == "qwen2" and cfg.get("use_sliding_window", False):
            raise ValueError("unsupported: Qwen2 sliding-window attention (use_sliding_window=true)")
        num_heads = positive_int(_required(cfg, "num_attention_heads"), "num_attention_heads")
        hidden_size = positive_int(_required(cfg, "hidden_size"), "hidden_size")
        num_kv_heads = cfg.get("num_key_value_heads")
        num_kv_heads = num_heads if num_kv_heads is None else positive_int(num_kv_heads, "num_key_value_heads")
        head_dim = cfg.get("head_dim")
        head_dim = hidden_size // num_heads if head_dim is None else positive_int(head_dim, "head_dim")
        max_positions = int(cfg.get("max_position_embeddings", 2048))
        rope_theta, rope_scaling = _parse_rope(cfg, max_positions)
        llama_bias = bool(cfg.get("attention_bias", False))
        return cls(
            arch=model_type,
            vocab_size=positive_int(_required(cfg, "vocab_size"), "vocab_size"),
            hidden_size=hidden_size,
            intermediate_size=positive_int(_required(cfg, "intermediate_size"), "intermediate_size"),
            num_layers=positive_int(_required(cfg, "num_hidden_layers"), "num_hidden_layers"),
            num_heads=num_heads,
            num_kv_heads=num_kv_heads,
            head_dim=head_dim,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=max_positions,
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=True if model_type == "qwen2" else llama_bias,
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=token_id_list(cfg.get("eos_token_id")),
            o_proj_bias=llama_bias if model_type == "llama" else False,
            mlp_bias=bool(cfg.get("mlp_bias", False)) if model_type == "llama" else False,
        )


def token_id_list(value: Any) -> list[int]:
    """An eos_token_id field (None, an int or a list) as a list of ints."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def positive_int(value: Any, name: str) -> int:
    """A config field as a positive int, or ValueError naming it (0 heads would divide by zero)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"config {name} must be a positive integer, got {value!r}")
    return int(value)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding an object (config.json, tokenizer_config.json, ...), or ValueError naming
    the file: a bare JSONDecodeError does not say which of a checkpoint's files is broken."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def _required(cfg: dict[str, Any], key: str) -> Any:
    if cfg.get(key) is None:
        raise ValueError(f"config.json lacks {key!r}")
    return cfg[key]


def _parse_rope(cfg: dict[str, Any], max_positions: int) -> tuple[float, Optional[dict[str, Any]]]:
    """(rope_theta, normalized rope_scaling) following transformers' standardize_rope_params."""
    params = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    rope_type = params.pop("rope_type", None) or params.pop("type", None) or "default"
    params.pop("type", None)
    theta = float(params.pop("rope_theta", None) or cfg.get("rope_theta") or 10000.0)
    partial = params.pop("partial_rotary_factor", cfg.get("partial_rotary_factor", 1.0))
    if partial is not None and float(partial) != 1.0:
        raise ValueError(f"unsupported: partial_rotary_factor {partial} (only full-width RoPE is implemented)")
    if rope_type == "default":
        return theta, None
    if rope_type == "llama3":
        if "original_max_position_embeddings" in cfg:
            params["original_max_position_embeddings"] = cfg["original_max_position_embeddings"]
        params.setdefault("original_max_position_embeddings", max_positions)
    return theta, {"rope_type": rope_type, **params}


# The dtypes a model's weights may be loaded in, by name (`a1 eval --dtype`, `a1 serve --dtype`); no
# name keeps the checkpoint's own way: a GGUF runs quantized, other checkpoints load as float32.
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def check_dtype_name(name: Optional[str], argument: str = "dtype") -> Optional[str]:
    """`name` when it is None or one of DTYPE_NAMES, else ValueError naming `argument`."""
    if name is not None and name not in DTYPE_NAMES:
        raise ValueError(f"{argument} must be one of {', '.join(DTYPE_NAMES)} or left out (a GGUF then runs "
                         f"quantized, other checkpoints in float32), got {name!r}")
    return name
