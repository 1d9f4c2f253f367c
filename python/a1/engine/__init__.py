"""The inference engine: block manager, sequences, scheduler, model runner, sync and async fronts."""
from .async_engine import AsyncEngine
from .block_manager import BlockManager, split_kv_budget
from .config import EngineConfig, num_blocks_for_budget
from .llm_engine import LLMEngine
from .metrics import EngineMetrics, RequestMetrics
from .outputs import CompletionOutput, RequestFailed, RequestOutput, ScoreResult
from .sampling_params import SamplingParams

__all__ = [
    "AsyncEngine", "BlockManager", "CompletionOutput", "EngineConfig", "EngineMetrics", "LLMEngine", "RequestFailed", "RequestMetrics",
    "RequestOutput", "SamplingParams", "ScoreResult", "num_blocks_for_budget", "split_kv_budget",
]
