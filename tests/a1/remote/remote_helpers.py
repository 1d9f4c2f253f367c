"""Helpers of the remote tests: an offline calibrator of fixed scores (p-values then do not depend
on the order steps arrive in), the tiny character-vocabulary pair served in-process, and a fault
injector that makes the in-process server slow, wrong or broken on purpose."""
from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Optional

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))

from a1.calibration import Calibrator  # noqa: E402

TURNS = (0, 1, 2, 4, 8)


def run_engine(engine, limit: int = 200) -> list:
    """Every output of an engine stepped until it has nothing unfinished (within `limit` steps)."""
    outs = []
    for _ in range(limit):
        if not engine.has_unfinished():
            return outs
        outs.extend(engine.step())
    raise AssertionError("the engine did not finish within the step limit")


def fixed_calibrator(low: float, high: float, count: int = 40, turn_edges=(1, 2, 4, 8)) -> Calibrator:
    """count log-spaced scores in [low, high] in every turn stratum (no updates during a run)."""
    calibrator = Calibrator(turn_edges, per_question=False, smoothed=False, seed=0)
    for turn in TURNS:
        for i in range(count):
            calibrator.update(math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (count - 1)), turn=turn)
    return calibrator


class Faults:
    """What the in-process server does wrong: mode in
    slow        sleep `delay` s before answering (every request of `kinds`)
    malformed   answer a body that is not JSON
    truncated   answer the first half of the JSON body
    fewer       drop the last prompt log-prob (scoring answers)
    shift       file every prompt log-prob value one position early (token i's at i - 1, the ids kept)
    garbage     replace every prompt log-prob value by -1.0
    echo_only   answer like llama-cpp-python: no prompt_logprobs / token_ids, tokens named by text
    status      answer HTTP `status` with a JSON error
    scaled      divide every generated log-prob by the request's temperature (a stand-in for SGLang's
                log_softmax(logits / T) generation log-probs)
    replay      answer as the server of `fixture` (tests/a1/remote/fixtures/): its GET bodies, 404 for
                the endpoints it lacks, its golden answer to each request of its exchanges (matched by
                prompt and kind; the request is kept in `captured`); anything else goes to the
                engine (refused like llama-cpp-python refuses token-id prompts, or answered like it
                echoes, where the fixture says so)
    Counts the requests of `kinds` it saw; `after` lets that many through untouched first."""

    def __init__(self) -> None:
        self.mode: Optional[str] = None
        self.kinds = ("gen", "score")
        self.delay, self.status, self.after, self.seen = 1.0, 503, 0, 0
        self.fixture: Optional[dict] = None
        self.captured: list[dict] = []

    def set(self, mode: Optional[str], kinds=("gen", "score"), **settings) -> "Faults":
        self.mode, self.kinds, self.seen, self.captured = mode, tuple(kinds), 0, []
        for name, value in settings.items():
            setattr(self, name, value)
        return self


def _kind(body: dict) -> str:
    scoring = body.get("prompt_logprobs") is not None or body.get("echo") or body.get("logprob_start_len", -1) >= 0
    return "score" if scoring else "gen"


def _shift(body: dict, mode: str) -> dict:
    choice = body.get("choices", [{}])[0] if "choices" in body else None
    if choice is not None and choice.get("prompt_logprobs") is not None:
        entries = choice["prompt_logprobs"]
        if mode == "fewer":
            choice["prompt_logprobs"] = entries[:-1]
            return body
        values = [None if e is None else next(iter(e.values()))["logprob"] for e in entries]
        if mode == "shift":
            values = values[:1] + values[2:] + [-1.0]
        for e, v in zip(entries, values):
            if e is not None:
                next(iter(e.values()))["logprob"] = -1.0 if mode == "garbage" else (v if v is not None else -1.0)
    elif "meta_info" in body and body["meta_info"].get("input_token_logprobs"):
        entries = body["meta_info"]["input_token_logprobs"]
        if mode == "fewer":
            body["meta_info"]["input_token_logprobs"] = entries[:-1]
            return body
        values = [e[0] for e in entries]
        if mode == "shift":
            values = values[1:] + [-1.0]
        for e, v in zip(entries, values):
            e[0] = -1.0 if mode == "garbage" else v
    return body


def _echo_only(body: dict, tokenizer) -> dict:
    choice = body["choices"][0]
    choice.pop("prompt_logprobs", None)
    choice.pop("token_ids", None)
    choice.pop("prompt_token_ids", None)
    logprobs = choice.get("logprobs")
    if logprobs:
        logprobs["tokens"] = [t if not t.startswith("token_id:") else tokenizer.decode([int(t[9:])])
                              for t in logprobs["tokens"]]
    return body


def _prompt(body: dict):
    return body.get("prompt", body.get("input_ids"))


async def _replay(request: web.Request, handler, faults: Faults, tokenizer):
    fixture = faults.fixture
    if request.method == "GET":
        if request.path in fixture.get("get", {}):
            return web.json_response(fixture["get"][request.path])
        if request.path in fixture.get("absent", []):
            return web.json_response({"detail": "Not Found"}, status=404)
        return await handler(request)
    body = json.loads(await request.read())
    for exchange in fixture["exchanges"]:
        if _prompt(exchange["request"]) == _prompt(body) and _kind(exchange["request"]) == _kind(body):
            faults.captured.append(body)
            return web.json_response(exchange["response"], status=exchange.get("status", 200))
    if fixture.get("refuse_token_ids") and isinstance(body.get("prompt"), list):  # llama-cpp-python's 422
        return web.json_response({"detail": [{"type": "string_type", "loc": ["body", "prompt", "str"],
                                              "msg": "Input should be a valid string", "input": body["prompt"]}]},
                                 status=422)
    response = await handler(request)
    if fixture.get("echo_only") and response.status == 200:
        return web.json_response(_echo_only(json.loads(response.body), tokenizer))
    return response


def _scaled(body: dict, temperature: float) -> dict:
    for entry in body.get("meta_info", {}).get("output_token_logprobs", []):
        entry[0] = entry[0] / temperature
    choice = body.get("choices", [{}])[0]
    if choice.get("logprobs") and choice["logprobs"].get("token_logprobs") and not choice.get("prompt_logprobs"):
        choice["logprobs"]["token_logprobs"] = [v / temperature for v in choice["logprobs"]["token_logprobs"]]
    return body


def fault_middleware(faults: Faults, tokenizer):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if faults.mode == "replay":
            return await _replay(request, handler, faults, tokenizer)
        if request.method != "POST" or faults.mode is None:
            return await handler(request)
        body = json.loads(await request.read())
        if _kind(body) not in faults.kinds:
            return await handler(request)
        faults.seen += 1
        if faults.seen <= faults.after:
            return await handler(request)
        if faults.mode == "slow":
            await asyncio.sleep(faults.delay)
        if faults.mode == "status":
            return web.json_response({"error": {"message": "injected failure"}}, status=faults.status)
        response = await handler(request)
        if faults.mode == "malformed":
            return web.Response(body=b"<html>502 Bad Gateway</html>", content_type="application/json")
        if faults.mode == "truncated":
            return web.Response(body=response.body[: len(response.body) // 2], content_type="application/json")
        if faults.mode in ("fewer", "shift", "garbage") and response.status == 200:
            return web.json_response(_shift(json.loads(response.body), faults.mode))
        if faults.mode == "scaled" and response.status == 200:
            temperature = body.get("temperature", body.get("sampling_params", {}).get("temperature", 1.0))
            return web.json_response(_scaled(json.loads(response.body), temperature or 1.0))
        if faults.mode == "echo_only" and response.status == 200:
            return web.json_response(_echo_only(json.loads(response.body), tokenizer))
        return response

    return middleware


def serve_with_faults(llm, faults: Faults):
    """An in-process a1 serve of llm whose answers go through the fault injector."""
    from a1.serve import ServerThread, create_app

    app = create_app(llm)
    app.middlewares.append(fault_middleware(faults, llm.tokenizer))
    return ServerThread(app).start()
