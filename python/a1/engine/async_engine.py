"""asyncio front end: many coroutines await generate/score/fork/... independently; one background
task applies their requests between steps and runs the engine's step in a worker thread, so every
step batches whatever is ready and nobody waits for an unrelated request to finish.

With a draft/target pair (PairEngine) the models are addressed as `engine.target` and
`engine.draft` (the same view in self mode); the methods on the AsyncEngine itself act on the target.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional, Union

from .config import EngineConfig
from .llm_engine import LLMEngine
from .metrics import EngineMetrics
from .outputs import RequestFailed, RequestOutput, ScoreResult
from .pair import PairEngine
from .sampling_params import SamplingParams


class AsyncEngine:
    def __init__(self, engine: Union[LLMEngine, PairEngine]) -> None:
        self.pair = engine if isinstance(engine, PairEngine) else PairEngine(engine)
        self.engine = self.pair.target
        self.target = AsyncModel(self, self.pair.target)
        self.draft = self.target if self.pair.self_mode else AsyncModel(self, self.pair.draft)
        self._commands: list[tuple[Callable[[], Any], asyncio.Future]] = []
        self._waiters: dict[tuple[int, str, int], _Request] = {}
        self._cancelled: list[_Request] = []  # requests whose callers gave up: undone between steps
        self._wake: Optional[asyncio.Event] = None
        self._loop_task: Optional[asyncio.Task] = None
        self._error: Optional[BaseException] = None
        self._closing = False

    @classmethod
    def from_model(cls, model, tokenizer, config: Optional[EngineConfig] = None) -> "AsyncEngine":
        return cls(LLMEngine(model, tokenizer, config))

    @property
    def metrics(self) -> EngineMetrics:
        return self.engine.metrics

    # ------------------------------------------------------------------ background loop
    def _ensure_loop(self) -> None:
        if self._error is not None:
            raise RuntimeError("the engine loop failed") from self._error
        if self._closing:
            raise RuntimeError("the engine is closed")
        if self._loop_task is None or self._loop_task.done():
            self._wake = asyncio.Event()
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="a1-engine-loop")

    async def _run(self) -> None:
        try:
            while not self._closing:
                self._apply_commands()
                if not self.pair.has_unfinished():
                    if not self._commands:
                        self._wake.clear()
                        await self._wake.wait()
                    continue
                for engine, out in await asyncio.to_thread(self.pair.step):
                    kind, seq_id = ("gen", out.request_id) if isinstance(out, RequestOutput) else ("score", out.seq_id)
                    request = self._waiters.pop((id(engine), kind, seq_id), None)
                    if request is None or request.output.done():
                        continue
                    future = request.output
                    if getattr(out, "error", None) is not None:  # this request failed; the loop goes on
                        what = "request" if kind == "gen" else "scoring of sequence"
                        future.set_exception(RequestFailed(f"{what} {seq_id}", [(seq_id, out.error)]))
                    else:
                        future.set_result(out)
                await asyncio.sleep(0)  # let coroutines woken by this step submit their next request
        except Exception as err:  # last resort (step() fails requests, not itself): fail every waiter
            self._error = err
            for future in [r.output for r in self._waiters.values()] + [f for _, f in self._commands]:
                if not future.done():
                    future.set_exception(err)
            self._waiters.clear()
            self._commands.clear()

    def _apply_commands(self) -> None:
        self._undo_cancelled()
        commands, self._commands = self._commands, []
        for command, future in commands:
            if future.done():
                continue
            try:
                future.set_result(command())
            except Exception as err:
                future.set_exception(err)

    async def _call(self, command: Callable[[], Any]) -> Any:
        """Run command on the engine between two steps and return its result."""
        self._ensure_loop()
        future = asyncio.get_running_loop().create_future()
        self._commands.append((command, future))
        self._wake.set()
        return await future

    async def _await_output(
        self, engine: LLMEngine, kind: str, submit: Callable[[], int], seq_id: Optional[int] = None
    ):
        """Submit a task on engine (submit returns its sequence id) and wait for its output. seq_id:
        the caller's sequence the task runs on, None when submit makes a new one. If the caller is
        cancelled, the request is undone (_Request.undo) whatever point it reached."""
        request = _Request(engine, asyncio.get_running_loop().create_future())

        def command() -> int:
            if seq_id is not None and engine.is_live(seq_id):
                request.history = engine.num_tokens(seq_id)
            request.seq_id = submit()
            request.submitted = True
            self._waiters[(id(engine), kind, request.seq_id)] = request
            return request.seq_id

        try:
            await self._call(command)
            return await request.output
        except asyncio.CancelledError:
            if request.submitted:
                self._waiters.pop((id(engine), kind, request.seq_id), None)
                if request.output.done() and not request.output.cancelled():
                    request.output.exception()  # set as the caller was cancelled: seen, not logged
                self._undo_later(request)
            raise

    def _undo_later(self, request: _Request) -> None:
        """Undo a cancelled request between two steps, or now when no step can be in flight."""
        if self._error is not None:
            return  # the loop died: the engine's state is unknown, leave it as it is
        if self._loop_task is not None and not self._loop_task.done():
            self._cancelled.append(request)
            self._wake.set()
        else:
            request.undo()

    def _undo_cancelled(self) -> None:
        cancelled, self._cancelled = self._cancelled, []
        for request in cancelled:
            request.undo()

    # ------------------------------------------------------------------ requests (on the target)
    async def generate(self, *args, **kwargs) -> RequestOutput:
        return await self.target.generate(*args, **kwargs)

    async def score(self, *args, **kwargs) -> ScoreResult:
        return await self.target.score(*args, **kwargs)

    async def add_sequence(self, token_ids: list[int]) -> int:
        return await self.target.add_sequence(token_ids)

    async def append(self, seq_id: int, token_ids: list[int], commit: bool = True) -> None:
        await self.target.append(seq_id, token_ids, commit)

    async def commit(self, seq_id: int) -> None:
        await self.target.commit(seq_id)

    async def fork(self, seq_id: int) -> int:
        return await self.target.fork(seq_id)

    async def truncate(self, seq_id: int, num_tokens: int) -> None:
        await self.target.truncate(seq_id, num_tokens)

    async def free(self, seq_id: int) -> None:
        await self.target.free(seq_id)

    async def token_ids(self, seq_id: int) -> list[int]:
        return await self.target.token_ids(seq_id)

    async def close(self) -> None:
        """Stop the background loop after the step in flight; pending requests are cancelled and
        undone (their sequences aborted, or callers' sequences rolled back), so their blocks are free."""
        self._closing = True
        if self._loop_task is not None:
            self._wake.set()
            await self._loop_task
            self._loop_task = None
        if self._error is None:
            self._undo_cancelled()
            for request in self._waiters.values():
                request.undo()
        for future in [r.output for r in self._waiters.values()] + [f for _, f in self._commands]:
            future.cancel()
        self._waiters.clear()
        self._commands.clear()
        self._cancelled.clear()

    async def __aenter__(self) -> "AsyncEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class _Request:
    """A generate or score request of an AsyncEngine: where it runs and what undoing it takes."""

    def __init__(self, engine: LLMEngine, output: asyncio.Future) -> None:
        self.engine, self.output = engine, output
        self.seq_id: Optional[int] = None
        self.history: Optional[int] = None  # a caller's sequence: its length before the request
        self.submitted = False
        self.undone = False

    def undo(self) -> None:
        """Once: a sequence the request made is aborted, a caller's rolled back to its history."""
        if not self.undone:
            self.undone = True
            self.engine.cancel(self.seq_id, self.history)


class AsyncModel:
    """One model of an AsyncEngine: its sequences and tasks, awaited (LLMEngine's methods)."""

    def __init__(self, front: AsyncEngine, engine: LLMEngine) -> None:
        self._front, self.engine = front, engine

    async def generate(
        self,
        prompt_token_ids: Optional[list[int]] = None,
        params: Optional[SamplingParams] = None,
        *,
        seq_id: Optional[int] = None,
        release: Optional[bool] = None,
        commit: bool = True,
    ) -> RequestOutput:
        """LLMEngine.add_request, awaited until the request finishes. If the caller is cancelled,
        the caller's sequence seq_id (unless release=True) stays live, rolled back to its history;
        a sequence the request made or was to release is aborted."""
        engine = self.engine
        return await self._front._await_output(
            engine, "gen",
            lambda: engine.add_request(prompt_token_ids, params, seq_id=seq_id, release=release, commit=commit),
            None if release else seq_id,  # a sequence handed over with release=True goes with the request
        )

    async def score(
        self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0, commit: Optional[bool] = None
    ) -> ScoreResult:
        """Log-probs of token_ids after seq_id's history (LLMEngine.submit_score). If the caller is
        cancelled, seq_id stays live, rolled back to its history."""

        def submit() -> int:
            self.engine.submit_score(seq_id, token_ids, keep, temperature, commit)
            return seq_id

        return await self._front._await_output(self.engine, "score", submit, seq_id)

    async def _call(self, method: str, *args):
        return await self._front._call(lambda: getattr(self.engine, method)(*args))

    async def add_sequence(self, token_ids: list[int]) -> int:
        return await self._call("add_sequence", token_ids)

    async def append(self, seq_id: int, token_ids: list[int], commit: bool = True) -> None:
        await self._call("append", seq_id, token_ids, commit)

    async def commit(self, seq_id: int) -> None:
        await self._call("commit", seq_id)

    async def fork(self, seq_id: int) -> int:
        return await self._call("fork", seq_id)

    async def truncate(self, seq_id: int, num_tokens: int) -> None:
        await self._call("truncate", seq_id, num_tokens)

    async def free(self, seq_id: int) -> None:
        await self._call("free", seq_id)

    async def token_ids(self, seq_id: int) -> list[int]:
        return await self._call("token_ids", seq_id)

    async def is_live(self, seq_id: int) -> bool:
        return await self._call("is_live", seq_id)
