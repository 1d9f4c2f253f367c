"""Settings of `a1 serve`."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from a1.models.config import check_dtype_name

from .security import check_allowed_hosts, check_api_key


@dataclass
class ServeConfig:
    """model / draft: an HF directory, a GGUF file or a built-in name (a1.LLM's); draft None serves
    one model. host defaults to the loopback interface: pass --host 0.0.0.0 deliberately.
    kv_cache_gb / max_model_len / max_num_seqs / seed: a1.LLM's; dtype: a1.models.config.DTYPE_NAMES
    (None: a GGUF runs quantized, other checkpoints in float32). max_request_bytes bounds a JSON body.
    api_key: required as `Authorization: Bearer` by every endpoint but /health (None: none; never
    shown in a repr). allowed_hosts: the Host header names accepted ("*": any; None: loopback names
    only when host is a loopback address, any otherwise). read_timeout: seconds a client has to send
    a request head, or a body, or to take its answer, before its connection is closed."""

    model: str
    draft: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    kv_cache_gb: Optional[float] = None
    max_model_len: Optional[int] = None
    dtype: Optional[str] = None
    max_num_seqs: int = 256
    seed: int = 0
    max_request_bytes: int = 64 << 20
    api_key: Optional[str] = field(default=None, repr=False)
    allowed_hosts: Optional[tuple[str, ...]] = None
    read_timeout: float = 60.0

    def __post_init__(self) -> None:
        check_dtype_name(self.dtype)
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an int in [0, 65535], got {self.port!r}")
        if self.max_request_bytes < 1024:
            raise ValueError(f"max_request_bytes must be >= 1024, got {self.max_request_bytes}")
        if self.api_key is not None:
            check_api_key(self.api_key)
        if self.allowed_hosts is not None:
            self.allowed_hosts = check_allowed_hosts(self.allowed_hosts)
            if not self.allowed_hosts:
                raise ValueError("allowed_hosts must name at least one host (or * for any)")
        if isinstance(self.read_timeout, bool) or not isinstance(self.read_timeout, (int, float)) \
                or not (math.isfinite(self.read_timeout) and self.read_timeout > 0):
            raise ValueError(f"read_timeout must be a number of seconds > 0, got {self.read_timeout!r}")
