"""a1: asynchronous test-time scaling (A1/ATTS) on a paged-KV inference engine.

`a1.LLM`, `a1.SamplingParams` and `a1.AsyncEngine` are imported on first use, so that importing a
subpackage (a1.models, a1.calibration, ...) does not pull in the engine.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "LLM": "a1.llm",
    "SamplingParams": "a1.engine.sampling_params",
    "AsyncEngine": "a1.engine.async_engine",
    "LLMEngine": "a1.engine.llm_engine",
    "EngineConfig": "a1.engine.config",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'a1' has no attribute {name!r}")
