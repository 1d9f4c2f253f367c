"""The one error a request handler raises for a bad request: an HTTP 4xx with a JSON body that
names the offending field (never a 500 with a traceback)."""
from __future__ import annotations

from typing import Optional


class RequestError(Exception):
    """A request the server refuses. status: the HTTP status (400 unless said otherwise); field:
    the request field at fault (None when the request as a whole is wrong)."""

    def __init__(self, message: str, field: Optional[str] = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.field, self.status = message, field, status

    def body(self) -> dict:
        """The OpenAI-style error object (vLLM and SGLang answer the same shape)."""
        kind = "NotFoundError" if self.status == 404 else "BadRequestError"
        return {"error": {"message": self.message, "type": kind, "param": self.field, "code": self.status}}
