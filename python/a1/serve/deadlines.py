"""Read deadlines against slow clients (slowloris): a connection must deliver a complete request
head within `timeout` s of opening, or of its last answer when kept alive, and must take that
answer within `timeout` s; otherwise it is closed. (A request's body has its own deadline, in
body.read_json: 408.) Without this a client that sends a byte now and then holds a connection, a
file descriptor and its buffers for ever. A connection whose request is being handled, however
long the generation takes, is never closed here."""
from __future__ import annotations

import asyncio
import math
from typing import Awaitable, Callable, Optional

from aiohttp import web


class ReadDeadlines:
    """The connections' clock: middleware() marks the connections inside a handler, watch(server)
    closes the others once idle for `timeout` s (checked every timeout/4 s, at most every second,
    so a connection goes between timeout and 1.5 x timeout after its last sign of life)."""

    def __init__(self, timeout: float) -> None:
        if not timeout > 0:
            raise ValueError(f"read_timeout must be > 0 s, got {timeout!r}")
        self.timeout = float(timeout)
        self.closed = 0  # connections closed for idling (reported by /metrics)
        self._busy: dict[object, int] = {}  # connection -> requests of it inside a handler
        self._idle_since: dict[object, float] = {}
        self._task: Optional[asyncio.Task] = None

    def middleware(self):
        @web.middleware
        async def track(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
            connection = request.protocol
            self._busy[connection] = self._busy.get(connection, 0) + 1
            try:
                return await handler(request)
            finally:
                left = self._busy.pop(connection) - 1
                if left:
                    self._busy[connection] = left
                else:  # the answer is written next: the client has `timeout` s to take it or to ask again
                    self._idle_since[connection] = asyncio.get_running_loop().time()

        return track

    def watch(self, server: web.Server) -> None:
        """Start closing idle connections of server (a runner's .server, once set up)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sweep(server), name="a1-serve-deadlines")

    async def stop(self, app: Optional[web.Application] = None) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _sweep(self, server: web.Server) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            now, live = loop.time(), server.connections
            for connection in live:
                if connection in self._busy:
                    continue
                since = self._idle_since.setdefault(connection, now)  # first seen: opened since the last sweep
                if now - since >= self.timeout:
                    connection.force_close()
                    self.closed += 1
                    self._idle_since[connection] = math.inf  # closed: not again while it winds down
            live_set = set(live)
            for connection in [c for c in self._idle_since if c not in live_set]:
                del self._idle_since[connection]
