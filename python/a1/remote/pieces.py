"""Token ids from a llama.cpp server's token pieces. llama-cpp-python's completions name tokens by
their text (`logprobs.tokens`), never by id; each piece is mapped back to the one id whose
decoded text it is, and the mapping is refused (not guessed) where two ids share a text or a
piece is not one token's text (a byte of a multi-byte character decodes to nothing there)."""
from __future__ import annotations

from typing import Optional

from .errors import RemoteProtocolError


class PieceMap:
    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._ids: Optional[dict[str, int]] = None  # text -> id, or -1 when several ids share it

    def _table(self) -> dict[str, int]:
        if self._ids is None:
            table: dict[str, int] = {}
            for token_id in range(self.tokenizer.vocab_size):
                text = self.tokenizer.decode([token_id], skip_special_tokens=False)
                table[text] = -1 if text in table else token_id
            self._ids = table
        return self._ids

    def piece(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id], skip_special_tokens=False)

    def ids(self, pieces: list, where: str) -> list[int]:
        table = self._table()
        out = []
        for i, piece in enumerate(pieces):
            token_id = table.get(piece, None) if isinstance(piece, str) else None
            if token_id is None or token_id < 0 or piece == "":
                why = "is no token's text" if token_id is None else "is the text of several tokens"
                raise RemoteProtocolError(
                    f"{where}: generated token {i} ({piece!r}) {why}, so its id is unknown: this server names "
                    f"tokens by text only (llama.cpp); use a server that returns token ids (vLLM, SGLang, a1 serve)"
                )
            out.append(token_id)
        return out
