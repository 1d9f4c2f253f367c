"""HTTP for remote engines: one asyncio loop in a daemon thread with one aiohttp session (keep-alive
connections) shared by the engines of a RemoteLLM. Requests are submitted from the caller's thread
and come back as concurrent futures; `done` is notified whenever one ends, so a step() of either
engine wakes as soon as anything finished. Each request has a timeout per attempt and bounded
retries with exponential backoff on connection errors, timeouts and HTTP 429/502/503/504; scoring
calls and generations have separate concurrency limits."""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Optional

import aiohttp

from .config import RemoteConfig
from .errors import RemoteHTTPError, RemoteProtocolError, RemoteUnavailableError

RETRY_STATUSES = frozenset({429, 502, 503, 504})
KINDS = ("score", "gen")


@dataclass
class Reply:
    """A decoded JSON answer, the attempts it took and the seconds it took (all attempts)."""

    body: Any
    attempts: int
    seconds: float


def decode_json(raw: bytes, where: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        head = raw[:160].decode("utf-8", "replace")
        raise RemoteProtocolError(
            f"{where}: the server's answer is not valid JSON ({err}); {len(raw)} bytes starting {head!r}"
        ) from None


def error_message(raw: bytes) -> str:
    """The message of an error body ({"error": {"message": ...}}, {"detail": ...}, or the text)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace")
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return str(error)[:500]
    return str(body)[:300]


def _shutdown(loop: asyncio.AbstractEventLoop, thread: threading.Thread, holder: dict) -> None:
    if not loop.is_running():
        return
    session = holder.get("session")

    async def close() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # cancelled requests: their futures say so
        if session is not None:
            await session.close()

    try:
        asyncio.run_coroutine_threadsafe(close(), loop).result(10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        if not thread.is_alive():
            loop.close()


class Transport:
    def __init__(self, config: Optional[RemoteConfig] = None) -> None:
        self.config = config or RemoteConfig()
        self.done = threading.Condition()
        self.engines: "weakref.WeakSet" = weakref.WeakSet()  # engines sharing it: a step() of one wakes for any
        self.down: dict[str, str] = {}  # base URL -> why: replicas taken out (for every engine sharing it)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="a1-remote-http", daemon=True)
        self._thread.start()
        self._holder: dict = {}
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._thread, self._holder)
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        total = self.config.max_scores + self.config.max_generations
        connector = aiohttp.TCPConnector(limit=total, limit_per_host=total, keepalive_timeout=60)
        headers = {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else None
        self._holder["session"] = aiohttp.ClientSession(connector=connector, headers=headers, raise_for_status=False)
        self._limits = {"score": asyncio.Semaphore(self.config.max_scores),
                        "gen": asyncio.Semaphore(self.config.max_generations)}

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Cancel what is in flight and close the connections and the loop."""
        self._finalizer()

    # ------------------------------------------------------------------ requests
    def submit(self, method: str, url: str, payload: Optional[dict], kind: str) -> concurrent.futures.Future:
        """Send a request from any thread; the future holds a Reply or the error (RemoteError)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if self.closed:
            raise RemoteUnavailableError("the remote engine is closed")
        future = asyncio.run_coroutine_threadsafe(self._request(method, url, payload, kind), self._loop)
        future.add_done_callback(self._notify)
        return future

    def call(self, method: str, url: str, payload: Optional[dict] = None, kind: str = "score") -> Reply:
        """submit() and wait (start-up probes); the future's error is raised here."""
        return self.submit(method, url, payload, kind).result()

    def answers(self, url: str) -> bool:
        """Whether anything at url answers one GET below HTTP 500 within twice the connect
        timeout (no retries): tells a dead server from one that refused one request."""
        async def check() -> bool:
            timeout = aiohttp.ClientTimeout(total=2 * self.config.connect_timeout)
            try:
                async with self._holder["session"].get(url, timeout=timeout) as resp:
                    return resp.status < 500
            except (asyncio.TimeoutError, aiohttp.ClientError):
                return False

        if self.closed:
            return False
        return asyncio.run_coroutine_threadsafe(check(), self._loop).result()

    def _notify(self, _future) -> None:
        with self.done:
            self.done.notify_all()

    async def _request(self, method: str, url: str, payload: Optional[dict], kind: str) -> Reply:
        cfg = self.config
        timeout = aiohttp.ClientTimeout(total=cfg.timeout(kind), sock_connect=cfg.connect_timeout)
        where = f"{method} {url}"
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with self._limits[kind]:
            for attempt in range(cfg.max_retries + 1):
                try:
                    async with self._holder["session"].request(method, url, json=payload, timeout=timeout) as resp:
                        raw, status = await resp.read(), resp.status
                except asyncio.TimeoutError:
                    failure: Exception = RemoteUnavailableError(f"{where}: no answer within {cfg.timeout(kind):g} s")
                except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as err:
                    failure = RemoteUnavailableError(f"{where}: {type(err).__name__}: {err}")
                except aiohttp.ClientError as err:  # not a transient failure (a bad URL, a redirect loop)
                    raise RemoteUnavailableError(f"{where}: {type(err).__name__}: {err}") from None
                else:
                    if status < 400:
                        return Reply(decode_json(raw, where), attempt + 1, loop.time() - start)
                    failure = RemoteHTTPError(f"{where}: HTTP {status}: {error_message(raw)}", status)
                    if status not in RETRY_STATUSES:
                        raise failure
                if attempt == cfg.max_retries:
                    raise type(failure)(*_with_attempts(failure, attempt + 1))
                await asyncio.sleep(cfg.delay(attempt))
        raise AssertionError("unreachable")


def _with_attempts(failure: Exception, attempts: int) -> tuple:
    message = f"{failure} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})"
    return (message, failure.status) if isinstance(failure, RemoteHTTPError) else (message,)
