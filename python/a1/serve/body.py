"""A request's JSON body read as untrusted input: within a deadline (a client uploading slowly gets
a 408 and its connection closed, not a handler held forever), within the size limit (aiohttp's
413), and parsed strictly. Whatever a body holds, the answer is a 4xx naming the field, never a
5xx: a lone surrogate (a `\\ud800` escape, which tokenizers and encoders raise on), NaN, Infinity
or a number beyond float64, an integer beyond 64 bits, or nesting deeper than any request needs
(100,000 `[` would exhaust the parser's recursion)."""
from __future__ import annotations

import asyncio
import json
import math
from typing import Any, Optional, Union

from aiohttp import web

from .errors import RequestError

MAX_DEPTH = 32  # requests nest 3 deep (sampling_params.stop[i]); the parser itself recurses ~1000 deep
INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1  # vLLM's bound too (seeds are int64)
Path = Union[tuple, None]  # (parent path, key or index), built only for containers: a path is named on error only


async def read_json(request: web.Request, timeout: float) -> Any:
    """The body, parsed and checked (check_values); timeout: seconds the whole body may take to arrive."""
    try:
        async with asyncio.timeout(timeout):
            raw = await request.read()
    except TimeoutError:
        raise RequestError(f"the request body did not arrive within {timeout:g} s", None, 408) from None
    except web.HTTPException:
        raise  # 413: over the size limit
    except Exception as err:  # a broken chunked encoding or Content-Encoding: the client's bytes
        raise RequestError(f"the request body could not be read: {type(err).__name__}: {err}") from None
    return parse_json(raw)


def parse_json(raw: bytes) -> Any:
    try:
        body = json.loads(raw, parse_constant=float)  # NaN / Infinity are named with their field below
    except RecursionError:
        raise RequestError(f"the request body nests deeper than {MAX_DEPTH} levels") from None
    except ValueError as err:  # JSONDecodeError, bad UTF-8, an integer of over 4300 digits
        raise RequestError(f"the request body is not valid JSON: {err}") from None
    check_values(body)
    return body


def check_values(body: Any) -> None:
    """Every string (keys too) valid Unicode, every number finite, every integer within int64,
    nesting at most MAX_DEPTH; iterative, so no input can exhaust the stack."""
    stack: list[tuple[Any, Path, int]] = [(body, None, 1)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, dict):
            items = value.items()
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            _check_scalar(value, path)
            continue
        if depth > MAX_DEPTH:
            raise RequestError(f"the request body nests deeper than {MAX_DEPTH} levels", _top(path))
        for key, item in items:
            if isinstance(key, str) and not _valid_text(key):
                raise RequestError(f"a key in {_name(path) or 'the request body'} is not valid Unicode "
                                   f"(a lone surrogate such as \\ud800)", _name(path))
            if isinstance(item, (dict, list)):
                stack.append((item, (path, key), depth + 1))
            elif not isinstance(item, (bool, type(None))):
                _check_scalar(item, (path, key))


def _check_scalar(value: Any, path: Path) -> None:
    if isinstance(value, str):
        if not _valid_text(value):
            raise RequestError(f"{_name(path) or 'the body'} is not valid Unicode: it holds a lone surrogate "
                               f"(such as \\ud800), which has no UTF-8 encoding", _name(path))
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise RequestError(f"{_name(path) or 'the body'} must be a finite number: NaN, Infinity and numbers "
                               f"beyond float64's range are refused (got {value})", _name(path))
    elif isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        raise RequestError(f"{_name(path) or 'the body'} must fit in 64 bits, got an integer of "
                           f"{value.bit_length()} bits", _name(path))


def _valid_text(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _name(path: Path) -> Optional[str]:
    """'sampling_params.stop[1]' for (((None, 'sampling_params'), 'stop'), 1); None for the body itself."""
    parts: list[str] = []
    while path is not None:
        path, key = path
        parts.append(f"[{key}]" if isinstance(key, int) else (f".{key}" if path is not None else str(key)))
    return "".join(reversed(parts)) or None


def _top(path: Path) -> Optional[str]:
    """The request's own field a path lies in ('prompt' for prompt[0][0]...)."""
    key = None
    while path is not None:
        path, key = path
    return None if key is None else _name((None, key))
