"""A request refused or broken because it ran past the server's context, named as such.

Servers say it in their own words: llama-cpp-python answers HTTP 500 "could not broadcast input
array from shape (49152,) into shape (0,)" when a generation reaches its --n_ctx (and 400 "This
model's maximum context length is N tokens" for a prompt over it); vLLM "maximum context length"
or "longer than the maximum model length of N"; SGLang "longer than the model's context length"
or "exceeds the maximum allowed length (N tokens)". The error then says the sizes on both sides
and how to make them agree."""
from __future__ import annotations

import re
from typing import Optional

from .errors import RemoteError, RemoteHTTPError, RemoteProtocolError

_CONTEXT = re.compile(r"could not broadcast input array|context (?:window|length)|maximum (?:model |allowed |context )?"
                      r"length|exceeds? the maximum", re.IGNORECASE)
_SIZE = re.compile(r"(?:context window of|maximum context length is|maximum model length of|context length \(|"
                   r"maximum allowed length \()\s*(\d+)", re.IGNORECASE)


def is_context_error(err: BaseException) -> bool:
    return isinstance(err, (RemoteHTTPError, RemoteProtocolError)) and bool(_CONTEXT.search(str(err)))


def name_context(err: RemoteError, server: str, context: Optional[int], history: int, new_tokens: int,
                 max_model_len: int) -> RemoteError:
    """err with what ran past what: the request's tokens, the server's context (as identify.py
    read it, else as the message says it) and a1's max_model_len; other errors as they are."""
    if not is_context_error(err):
        return err
    said = _SIZE.search(str(err))
    context = context or (int(said.group(1)) if said else None)
    theirs = (f" of {context} tokens" if context else
              " (which it does not report: llama-cpp-python does not say its --n_ctx)")
    message = (f"{err}\n    {server}: the request ran past the server's context: {history} tokens of history and "
               f"up to {new_tokens} more ({history + new_tokens} in all, within a1's max_model_len {max_model_len}) "
               f"do not fit the server's context{theirs}. Start the server with a context of at least "
               f"{max_model_len} tokens (llama.cpp: --n_ctx; vLLM: --max-model-len; SGLang: --context-length) or "
               f"give a1 the server's (RemoteLLM(max_model_len=...), a1 eval --max-model-len)")
    if isinstance(err, RemoteHTTPError):
        return RemoteHTTPError(message, err.status)
    return type(err)(message)
