"""Settings of `a1 serve`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass
class ServeConfig:
    """model / draft: an HF directory, a GGUF file or a built-in name (a1.LLM's); draft None serves
    one model. host defaults to the loopback interface: pass --host 0.0.0.0 deliberately.
    kv_cache_gb / max_model_len / max_num_seqs / seed: a1.LLM's. max_request_bytes bounds a JSON body."""

    model: str
    draft: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    kv_cache_gb: Optional[float] = None
    max_model_len: Optional[int] = None
    max_num_seqs: int = 256
    seed: int = 0
    max_request_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an int in [0, 65535], got {self.port!r}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")
