"""Errors of a remote engine. Each says which server and what went wrong; RemoteRequestError
also carries the failed requests so that the policy can name the samples they served."""
from __future__ import annotations

from typing import Any, Mapping, Sequence


class RemoteError(RuntimeError):
    """Base class of the remote engine's errors."""


class RemoteUnavailableError(RemoteError):
    """The server could not be reached or did not answer in time (after the retries)."""


class RemoteHTTPError(RemoteError):
    """The server answered an HTTP error status (its message included)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RemoteProtocolError(RemoteError):
    """The server's answer is not what the protocol promises: malformed or truncated JSON, missing
    fields, fewer log-probs than tokens, tokens that do not match the request."""


class RemoteAlignmentError(RemoteProtocolError):
    """The server's prompt log-probs do not line up with the tokens (found by the start-up probe)."""


class RemoteRequestError(RemoteError):
    """Requests failed during step(). failed_requests: (engine, kind, seq_id, cause) per failed
    request, kind "gen" or "score" (the keys the policy's driver waits on)."""

    def __init__(self, failed_requests: Sequence[tuple[Any, str, int, BaseException]]) -> None:
        self.failed_requests = list(failed_requests)
        lines = [f"{engine.name} {kind} of sequence {seq_id}: {cause}" for engine, kind, seq_id, cause in self.failed_requests]
        super().__init__(f"{len(lines)} remote request(s) failed:\n  " + "\n  ".join(lines))

    def name_samples(self, waiting: Mapping[tuple[int, str, int], tuple[int, int]]) -> "RemoteSamplesFailed":
        """The error naming the policy's samples; waiting maps (id(engine), kind, seq_id) to
        (question index, sample index) for the samples that were waiting on an output."""
        failed = []
        for engine, kind, seq_id, cause in self.failed_requests:
            question, sample = waiting.get((id(engine), kind, seq_id), (None, None))
            failed.append((question, sample, f"{engine.name} {kind} of sequence {seq_id}: {cause}"))
        return RemoteSamplesFailed(failed)


class RemoteSamplesFailed(RemoteError):
    """A policy run stopped because remote requests failed. failed: (question, sample, what) per
    failed request (question/sample None when no sample was waiting on it)."""

    def __init__(self, failed: Sequence[tuple[Any, Any, str]]) -> None:
        self.failed = list(failed)
        self.samples = sorted({(q, s) for q, s, _ in self.failed if q is not None})
        lines = [(f"question {q} sample {s}" if q is not None else "no sample") + f": {what}" for q, s, what in self.failed]
        super().__init__(f"the run stopped: {len(self.samples)} sample(s) failed:\n  " + "\n  ".join(lines))
