"""Running the application: in the foreground until SIGINT/SIGTERM (`a1 serve`), or in a
background thread of the calling process (tests, benchmarks)."""
from __future__ import annotations

import asyncio
import signal
import sys
import threading
from typing import Callable, Optional

from aiohttp import web

from .app import ACCESS, DEADLINES
from .security import before_routing


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Bind host:port (port 0: a free one) and return the runner and the bound port. The access
    policy's default Host list follows host (loopback or not); a client that disconnects cancels
    its handler (handler_cancellation: otherwise its generation would run to the end for nobody);
    idle and slow connections are closed after the app's read timeout."""
    app[ACCESS].bind(host)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True)
    await runner.setup()
    runner.server.request_handler = before_routing(app[ACCESS], runner.server.request_handler)
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    app[DEADLINES].watch(runner.server)
    bound = next(addr[1] for addr in runner.addresses if isinstance(addr, tuple))
    return runner, bound


async def serve_forever(app: web.Application, host: str, port: int, announce: Callable[[str], None]) -> None:
    runner, bound = await start_site(app, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for warning in app[ACCESS].warnings(host):
        print(f"a1 serve: warning: {warning}", file=sys.stderr, flush=True)
    announce(f"a1 serve: listening on http://{host}:{bound}")
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


class ServerThread:
    """The application served from a daemon thread; `url` once started, `stop()` to end it."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self.url: Optional[str] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._main, name="a1-serve", daemon=True)

    def start(self, timeout: float = 30.0) -> "ServerThread":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"a1 serve did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"a1 serve failed to start: {self._error}") from self._error
        return self

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._run())
        except BaseException as err:  # reported to start(), or printed if it came later
            if not self._ready.is_set():
                self._error = err
                self._ready.set()
            else:
                print(f"a1 serve thread ended with {type(err).__name__}: {err}", file=sys.stderr)
        finally:
            self._loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        runner, bound = await start_site(self.app, self.host, self.port)
        self.port, self.url = bound, f"http://{self.host}:{bound}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
