"""Llama / Qwen2 decoders on the paged KV cache, their tokenizers and loaders (HF directory, GGUF)."""
from .attention_metadata import AttentionMetadata
from .base import DecoderLM, ModelConfig
from .loader import LoadedModel, load_model
from .tokenizer import Tokenizer

__all__ = ["AttentionMetadata", "DecoderLM", "LoadedModel", "ModelConfig", "Tokenizer", "load_model"]
