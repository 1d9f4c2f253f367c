"""The client's tokenizer, loaded without the weights: from an HF directory (tokenizer.json +
config.json's EOS / BOS / context length), a GGUF file (its metadata only) or a built-in name;
an already built tokenizer passes through."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass
class ClientTokenizer:
    tokenizer: object
    eos_token_ids: list[int]
    max_position_embeddings: Optional[int]
    source: str
    model_vocab_size: Optional[int] = None  # embedding rows (may exceed the tokenizer: padded vocabularies)

    @property
    def vocab_size(self) -> int:
        """Token ids a server may send: the model's embedding rows when known."""
        return max(self.model_vocab_size or 0, self.tokenizer.vocab_size)


def load_tokenizer(spec) -> ClientTokenizer:
    """spec: a path / built-in name, a loaded model (anything with .tokenizer, e.g. a1.LLM) or a
    tokenizer (anything with encode, decode and vocab_size)."""
    if spec is None:
        raise ValueError("tokenizer is required: a local HF directory, a GGUF file or a built-in name of the served "
                         "model (token ids travel between client and server, so both must use the same vocabulary)")
    if isinstance(spec, (str, os.PathLike)):
        return _load_path(spec)
    tokenizer = getattr(spec, "tokenizer", spec)
    for attribute in ("encode", "decode", "vocab_size"):
        if not hasattr(tokenizer, attribute):
            raise TypeError(f"tokenizer must be a path, a built-in name or a tokenizer, got {type(spec).__name__}")
    model = getattr(getattr(spec, "model", None), "config", None)  # a loaded model says its embedding rows
    return ClientTokenizer(tokenizer, list(getattr(tokenizer, "eos_token_ids", [])), None, type(tokenizer).__name__,
                           getattr(model, "vocab_size", None))


def _load_path(spec) -> ClientTokenizer:
    from a1.models.loader import resolve_model_path
    from a1.models.tokenizer import Tokenizer

    path = resolve_model_path(spec)
    if path.is_dir():
        if (path / "config.json").is_file():
            from a1.models.hf_loader import read_hf_config

            config = read_hf_config(path)
            tokenizer = Tokenizer.from_hf_directory(path, config.eos_token_ids, config.bos_token_id)
            return ClientTokenizer(tokenizer, list(tokenizer.eos_token_ids), config.max_position_embeddings, str(path),
                                   config.vocab_size)
        tokenizer = Tokenizer.from_hf_directory(Path(path))
        return ClientTokenizer(tokenizer, list(tokenizer.eos_token_ids), None, str(path))
    from a1.models.gguf_loader import open_gguf, read_gguf_config, read_gguf_tokenizer

    reader = open_gguf(path)
    config = read_gguf_config(reader, path)
    tokenizer = read_gguf_tokenizer(path, config)
    eos = list(dict.fromkeys(list(config.eos_token_ids) + list(tokenizer.eos_token_ids)))
    return ClientTokenizer(tokenizer, eos, config.max_position_embeddings, str(path), config.vocab_size)
