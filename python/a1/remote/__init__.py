"""Remote backends: the A1 policy driving vLLM / SGLang / llama.cpp / `a1 serve` servers with the
same code as the embedded engine. `RemoteLLM(target_url, draft_url, tokenizer=...)` goes where an
a1.LLM goes (`a1.policy.generate(prompts, target=RemoteLLM(...))`); `RemoteBackend(url, tokenizer)`
is one model's backend (the subset of LLMEngine the policy uses). Each URL
may be a list: the replicas of one model (routing.py)."""
from .config import RemoteConfig
from .engine import RemoteBackend
from .errors import (
    RemoteAlignmentError, RemoteError, RemoteHTTPError, RemoteProtocolError, RemoteRequestError, RemoteSamplesFailed,
    RemoteUnavailableError,
)
from .llm import RemoteLLM
from .metrics import RemoteMetrics

__all__ = [
    "RemoteAlignmentError", "RemoteBackend", "RemoteConfig", "RemoteError", "RemoteHTTPError", "RemoteLLM",
    "RemoteMetrics", "RemoteProtocolError", "RemoteRequestError", "RemoteSamplesFailed", "RemoteUnavailableError",
]
