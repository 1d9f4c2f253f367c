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
        self._waiters: dict[tuple[int, str, int], asyncio.Future] = {}
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
                    key = (id(engine), kind, seq_id)
                    future = self._waiters.pop(key, None)
                    if future is None or future.done():
                        continue
                    if getattr(out, "error", None) is not None:  # this request failed; the loop goes on
                        what = "request" if kind == "gen" else "scoring of sequence"
                        future.set_exception(RequestFailed(f"{what} {seq_id}", [(seq_id, out.error)]))
                    else:
                        future.set_result(out)
                await asyncio.sleep(0)  # let coroutines woken by this step submit their next request
        except Exception as err:  # last resort (step() fails requests, not itself): fail every waiter
            self._error = err
            for future in list(self._waiters.values()) + [f for _, f in self._commands]:
                if not future.done():
                    future.set_exception(err)
            self._waiters.clear()
            self._commands.clear()

    def _apply_commands(self) -> None:
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

    async def _await_output(self, engine: LLMEngine, kind: str, submit: Callable[[], int]):
        """Submit a task on engine (submit returns its sequence id) and wait for its output."""
        loop = asyncio.get_running_loop()
        output = loop.create_future()

        def command() -> int:
            seq_id = submit()
            self._waiters[(id(engine), kind, seq_id)] = output
            return seq_id

        seq_id = await self._call(command)
        try:
            return await output
        except asyncio.CancelledError:
            if self._waiters.pop((id(engine), kind, seq_id), None) is not None and self._error is None and not self._closing:
                self._commands.append((lambda: engine.abort(seq_id), loop.create_future()))
                self._wake.set()
            raise

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
        """Stop the background loop after the step in flight; pending requests are cancelled."""
        self._closing = True
        if self._loop_task is not None:
            self._wake.set()
            await self._loop_task
            self._loop_task = None
        for future in list(self._waiters.values()) + [f for _, f in self._commands]:
            future.cancel()
        self._waiters.clear()
        self._commands.clear()

    async def __aenter__(self) -> "AsyncEngine":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


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
        """LLMEngine.add_request, awaited until the request finishes."""
        engine = self.engine
        return await self._front._await_output(
            engine, "gen",
            lambda: engine.add_request(prompt_token_ids, params, seq_id=seq_id, release=release, commit=commit),
        )

    async def score(
        self, seq_id: int, token_ids: list[int], keep: bool = True, temperature: float = 1.0, commit: Optional[bool] = None
    ) -> ScoreResult:
        """Log-probs of token_ids after seq_id's history (LLMEngine.submit_score)."""

        def submit() -> int:
            self.engine.submit_score(seq_id, token_ids, keep, temperature, commit)
            return seq_id

        return await self._front._await_output(self.engine, "score", submit)

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
