"""The one error a request handler raises for a bad request: an HTTP 4xx with a JSON body that
names the offending field (never a 500 with a traceback)."""
from __future__ import annotations

import reprlib
from typing import Any, Optional

from aiohttp import web

# the `type` of the OpenAI-style error object per status (the names OpenAI's clients raise)
_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError",
          405: "MethodNotAllowedError", 408: "RequestTimeoutError", 413: "RequestTooLargeError",
          415: "UnsupportedMediaTypeError", 417: "ExpectationFailedError"}
MAX_MESSAGE = 400  # characters: a message quotes client input, which may be megabytes
_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxdict, _BRIEF.maxlist, _BRIEF.maxstring, _BRIEF.maxlong = 3, 4, 8, 60, 40


def brief(value: Any) -> str:
    """A bounded repr of client input for a message: never the whole of a megabyte string or list."""
    return _BRIEF.repr(value)


class RequestError(Exception):
    """A request the server refuses. status: the HTTP status (400 unless said otherwise); field:
    the request field at fault (None when the request as a whole is wrong); headers: sent with the
    answer (WWW-Authenticate for a 401, Allow for a 405)."""

    def __init__(self, message: str, field: Optional[str] = None, status: int = 400,
                 headers: Optional[dict[str, str]] = None) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message, self.field, self.status, self.headers = message, field, status, headers or {}

    def body(self) -> dict:
        """The OpenAI-style error object (vLLM and SGLang answer the same shape)."""
        kind = _TYPES.get(self.status, "BadRequestError")
        return {"error": {"message": self.message, "type": kind, "param": self.field, "code": self.status}}

    def response(self) -> web.Response:
        response = web.json_response(self.body(), status=self.status, headers=self.headers)
        if self.status == 408:  # the rest of the body may still trickle in: do not wait for it
            response.force_close()
        return response
