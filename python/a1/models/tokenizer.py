"""Tokenizer: a `tokenizers.Tokenizer` plus the checkpoint's special tokens and chat template."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import tokenizers

from .chat_template import render_chat_template
from .config import read_json_object

SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "pad_token")


class Tokenizer:
    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        chat_template: Optional[str] = None,
        special_tokens: Optional[dict[str, Optional[str]]] = None,
        eos_token_ids: Sequence[int] = (),
        bos_token_id: Optional[int] = None,
    ) -> None:
        self.backend = backend
        self.chat_template = chat_template
        self.special_tokens = {name: (special_tokens or {}).get(name) for name in SPECIAL_TOKEN_NAMES}
        eos_ids = list(eos_token_ids)
        eos_token_id = self.token_to_id(self.special_tokens["eos_token"])
        if eos_token_id is not None and eos_token_id not in eos_ids:
            eos_ids.append(eos_token_id)
        self.eos_token_ids: list[int] = eos_ids
        self.bos_token_id: Optional[int] = (
            bos_token_id if bos_token_id is not None else self.token_to_id(self.special_tokens["bos_token"])
        )

    @property
    def vocab_size(self) -> int:
        """Number of token ids, added tokens included."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def token_to_id(self, token: Optional[str]) -> Optional[int]:
        return None if token is None else self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> Optional[str]:
        return self.backend.id_to_token(token_id)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        """The prompt text of `messages` rendered with the checkpoint's chat template."""
        if not self.chat_template:
            raise ValueError("this checkpoint has no chat template (tokenizer_config.json / GGUF metadata lack one)")
        return render_chat_template(self.chat_template, messages, add_generation_prompt, self.special_tokens, **extra)

    @classmethod
    def from_hf_directory(
        cls, directory: Path, eos_token_ids: Sequence[int] = (), bos_token_id: Optional[int] = None
    ) -> "Tokenizer":
        """tokenizer.json + tokenizer_config.json (special tokens, chat_template) [+ chat_template.jinja]."""
        tokenizer_file = directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise ValueError(f"{directory} has no tokenizer.json (only fast-tokenizer checkpoints are supported)")
        try:
            backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        except Exception as err:  # tokenizers raises a bare Exception that does not name the file
            raise ValueError(f"{tokenizer_file} is not a valid tokenizer.json: {err}") from err
        config_file = directory / "tokenizer_config.json"
        tokenizer_config = read_json_object(config_file) if config_file.is_file() else {}
        special = {name: _token_content(tokenizer_config.get(name)) for name in SPECIAL_TOKEN_NAMES}
        template = _select_template(tokenizer_config.get("chat_template"))
        jinja_file = directory / "chat_template.jinja"
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text()
        return cls(
            backend,
            chat_template=template,
            special_tokens=special,
            eos_token_ids=eos_token_ids,
            bos_token_id=bos_token_id,
        )


def _token_content(value: Any) -> Optional[str]:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def _select_template(value: Any) -> Optional[str]:
    """chat_template is a string, or a list of {"name", "template"} of which we use "default"."""
    if isinstance(value, list):
        named = {entry.get("name"): entry.get("template") for entry in value if isinstance(entry, dict)}
        return named.get("default")
    return value if isinstance(value, str) else None
