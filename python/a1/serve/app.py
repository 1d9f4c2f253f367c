"""The aiohttp application of `a1 serve`: one AsyncEngine over the model (or draft/target pair)
behind /v1/completions (OpenAI / vLLM), /generate (SGLang), /v1/models, /get_model_info,
/health and /metrics. Bad requests get a 4xx JSON error naming the field; nothing answers a
traceback. In front of the handlers: read deadlines (deadlines.py), then the Host / API key /
Content-Type checks (security.py); bodies are read strictly (body.py). A client that disconnects
cancels its request (the runner's handler_cancellation): its KV blocks are freed at the next step."""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import Awaitable, Callable, Iterable, Optional

from aiohttp import web

from a1.engine.async_engine import AsyncEngine, AsyncModel

from .body import read_json
from .deadlines import ReadDeadlines
from .errors import RequestError, brief
from .jobs import run_job
from .openai_api import completion_response, parse_completion
from .security import AccessPolicy, access_middleware
from .sglang_api import generate_response, parse_generate

log = logging.getLogger("a1.serve")
STATE: web.AppKey = web.AppKey("a1_state", object)
ACCESS: web.AppKey = web.AppKey("a1_access", AccessPolicy)
DEADLINES: web.AppKey = web.AppKey("a1_deadlines", ReadDeadlines)


class ServerState:
    """The engine and what the endpoints report. llm: anything with .pair (a1.LLM)."""

    def __init__(self, llm) -> None:
        self.llm, self.pair = llm, llm.pair
        self.engine = AsyncEngine(self.pair)
        self.models: dict[str, AsyncModel] = {self.pair.target_name: self.engine.target}
        if not self.pair.self_mode:
            self.models[self.pair.draft_name] = self.engine.draft
        self.aliases = {"target": self.engine.target, "draft": self.engine.draft}
        self.started = time.time()
        self.in_flight = self.num_requests = self.num_rejected = self.num_failed = self.num_cancelled = 0
        self._ids = itertools.count()

    def resolve(self, name) -> tuple[str, AsyncModel]:
        """The served model a request names (None: the target)."""
        if name is None:
            return self.pair.target_name, self.engine.target
        if not isinstance(name, str):
            raise RequestError(f"model must be a string, got {brief(name)}", "model")
        model = self.models.get(name) or self.aliases.get(name)
        if model is None:
            raise RequestError(f"model {name!r} is not served here; served: {sorted(self.models)}", "model", 404)
        return name, model

    def request_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def health(self) -> dict:
        engines = {"target": self.pair.target} if self.pair.self_mode else {"target": self.pair.target,
                                                                            "draft": self.pair.draft}
        return {
            "status": "error" if self.engine._error is not None else "ok",
            "models": sorted(self.models), "max_model_len": self.pair.max_model_len,
            "used_blocks": {role: e.block_manager.num_used_blocks for role, e in engines.items()},
            "live_sequences": {role: len(e.seqs) for role, e in engines.items()},
            "in_flight_requests": self.in_flight, "uptime_s": time.time() - self.started,
        }

    def metrics(self) -> dict:
        out = self.health()
        out["engine"] = {"target": self.pair.target.metrics.as_dict()}
        if not self.pair.self_mode:
            out["engine"]["draft"] = self.pair.draft.metrics.as_dict()
        out["requests"] = {"total": self.num_requests, "rejected": self.num_rejected, "failed": self.num_failed,
                           "cancelled": self.num_cancelled}  # cancelled: the client went away first
        return out


async def _read_json(request: web.Request):
    return await read_json(request, request.app[DEADLINES].timeout)


def _engine_of(model: AsyncModel):
    return model.engine


async def completions(request: web.Request) -> web.Response:
    state: ServerState = request.app[STATE]
    body = await _read_json(request)
    name, model = state.resolve(body.get("model") if isinstance(body, dict) else None)
    engine = _engine_of(model)
    job, options = parse_completion(body, engine.tokenizer, engine.vocab_size, engine.max_model_len)
    result = await run_job(model, job)
    return web.json_response(
        completion_response(job, options, result, name, state.request_id("cmpl"), engine.tokenizer)
    )


async def generate(request: web.Request) -> web.Response:
    state: ServerState = request.app[STATE]
    body = await _read_json(request)
    _, model = state.resolve(body.get("model") if isinstance(body, dict) else None)
    engine = _engine_of(model)
    job, options = parse_generate(body, engine.tokenizer, engine.vocab_size, engine.max_model_len)
    result = await run_job(model, job)
    return web.json_response(generate_response(job, options, result, state.request_id("gen"), engine.tokenizer))


async def models(request: web.Request) -> web.Response:
    state: ServerState = request.app[STATE]
    data = [{"id": name, "object": "model", "created": int(state.started), "owned_by": "a1", "root": name,
             "max_model_len": state.pair.max_model_len} for name in state.models]
    return web.json_response({"object": "list", "data": data})


async def model_info(request: web.Request) -> web.Response:
    state: ServerState = request.app[STATE]
    name = state.pair.target_name
    return web.json_response({"model_path": name, "tokenizer_path": name, "is_generation": True,
                              "max_model_len": state.pair.max_model_len, "served_models": sorted(state.models)})


async def health(request: web.Request) -> web.Response:
    report = request.app[STATE].health()
    return web.json_response(report, status=200 if report["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    report = request.app[STATE].metrics()
    report["idle_connections_closed"] = request.app[DEADLINES].closed
    return web.json_response(report)


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """4xx JSON for bad requests, JSON (never a traceback) for everything else; counts requests."""
    state: ServerState = request.app[STATE]
    counted = request.method == "POST"
    if counted:
        state.num_requests += 1
        state.in_flight += 1
    try:
        return await handler(request)
    except RequestError as err:
        state.num_rejected += counted
        return err.response()
    except web.HTTPException as err:  # 404, 405 (with its Allow header), 413 from aiohttp
        state.num_rejected += counted
        detail = f" ({err.text})" if err.status == 413 else ""
        kept = {name: err.headers[name] for name in ("Allow",) if name in err.headers}
        return RequestError(f"{request.method} {request.path}: {err.reason}{detail}", None, err.status, kept).response()
    except asyncio.CancelledError:  # the client disconnected: the engine undoes the request
        state.num_cancelled += counted
        raise
    except ValueError as err:  # an engine input check the request parsing did not anticipate
        state.num_rejected += counted
        return web.json_response(RequestError(f"rejected by the engine: {err}").body(), status=400)
    except Exception as err:
        state.num_failed += counted
        log.error("request %s %s failed: %s: %s", request.method, request.path, type(err).__name__, err)
        message = f"internal error: {type(err).__name__}: {err}"
        return web.json_response({"error": {"message": message, "type": "InternalServerError", "param": None,
                                            "code": 500}}, status=500)
    finally:
        if counted:
            state.in_flight -= 1


def create_app(llm, max_request_bytes: int = 64 << 20, state: Optional[ServerState] = None, *,
               api_key: Optional[str] = None, allowed_hosts: Optional[Iterable[str]] = None,
               read_timeout: float = 60.0) -> web.Application:
    """The application serving llm (an a1.LLM, or anything with .pair); the engine starts with the
    first request and stops with the application's cleanup. api_key / allowed_hosts: AccessPolicy's
    (allowed_hosts None: loopback names only when bound to loopback, settled by the runner);
    read_timeout: seconds a client has for a request head or body (ReadDeadlines)."""
    access, deadlines = AccessPolicy(api_key, allowed_hosts), ReadDeadlines(read_timeout)
    app = web.Application(middlewares=[deadlines.middleware(), errors, access_middleware(access)],
                          client_max_size=max_request_bytes)
    app[STATE] = state or ServerState(llm)
    app[ACCESS], app[DEADLINES] = access, deadlines

    async def close_engine(app: web.Application) -> None:
        await app[STATE].engine.close()

    app.on_cleanup.append(close_engine)
    app.on_cleanup.append(deadlines.stop)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/generate", generate)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/get_model_info", model_info)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    return app
