"""`a1 serve`'s connections: a client that disconnects cancels its request (its KV blocks are
free within a step, the generation stops), a connection that sends its request head or body too
slowly is closed after the read timeout (a stalled body gets a 408), an idle kept-alive one too,
while a generation that takes longer than the timeout is answered in full."""
from __future__ import annotations

import asyncio
import json
import random
import socket
import time
from typing import Callable

import pytest

import a1
from a1.engine.async_engine import AsyncEngine
from a1.engine.sampling_params import SamplingParams
from a1.serve.jobs import run_job
from a1.serve.params import Job
from serve_helpers import get, post, serving, write_tiny_checkpoint

READ_TIMEOUT = 1.0
MAX_TOKENS = 8000  # ~8 s of generation on the tiny model: far longer than a cancelled request runs
LONG = 4000  # ~2.5 s: longer than READ_TIMEOUT


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    checkpoint = write_tiny_checkpoint(tmp_path_factory.mktemp("long") / "tiny", seed=3, max_position_embeddings=8192)
    with serving(str(checkpoint), max_model_len=8192, kv_cache_gb=0.05, read_timeout=READ_TIMEOUT) as thread:
        yield thread


def wait_for(check: Callable[[], bool], timeout: float, every: float = 0.01) -> float:
    """Seconds until check() held; AssertionError after timeout."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(every)
    return time.monotonic() - start


def http_bytes(path: str, body: dict, port: int) -> bytes:
    raw = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n").encode() + raw


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed sock (whatever it sent before is read and dropped)."""
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:  # reset
        return True


def sampled(url: str) -> int:
    return get(url + "/metrics")[1]["engine"]["target"]["tokens_sampled"]


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": [0, 5, 6, 7], "max_tokens": MAX_TOKENS, "ignore_eos": True}),
    ("/generate", {"input_ids": [0, 5, 6, 7], "return_logprob": True, "logprob_start_len": 1,
                   "sampling_params": {"max_new_tokens": MAX_TOKENS, "ignore_eos": True}}),
])
def test_a_client_that_disconnects_cancels_its_request(server, path, body):
    url, before = server.url, sampled(server.url)
    cancelled = get(url + "/metrics")[1]["requests"]["cancelled"]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(http_bytes(path, body, server.port))
    wait_for(lambda: get(url + "/health")[1]["used_blocks"]["target"] > 0, 10)  # it is generating
    sock.close()
    wait_for(lambda: get(url + "/health")[1]["used_blocks"]["target"] == 0, 5)
    health = get(url + "/health")[1]
    assert health["live_sequences"] == {"target": 0} and health["in_flight_requests"] == 0
    done = sampled(url) - before
    assert done < MAX_TOKENS // 2, f"{done} of {MAX_TOKENS} tokens: the request ran on after its client left"
    time.sleep(0.3)
    assert sampled(url) - before == done  # the engine stopped: nothing else runs
    assert get(url + "/metrics")[1]["requests"]["cancelled"] == cancelled + 1


def test_clients_leaving_at_any_moment_leave_no_block_behind(server):
    """Scoring + generation requests of both APIs closed after 0-40 ms: at every await of a job."""
    rng, url = random.Random(0), server.url
    bodies = [("/v1/completions", {"prompt": [0] + list(range(5, 5 + n)), "max_tokens": 300, "ignore_eos": True,
                                   "prompt_logprobs": 0}) for n in range(4, 40, 3)]
    bodies += [("/generate", {"input_ids": [0] + list(range(5, 5 + n)), "return_logprob": True,
                              "logprob_start_len": n // 2, "sampling_params": {"max_new_tokens": 300}})
               for n in range(4, 40, 3)]
    open_sockets = []
    for path, body in bodies:
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(http_bytes(path, body, server.port))
        open_sockets.append(sock)
        time.sleep(rng.uniform(0, 0.04))
        open_sockets.pop(rng.randrange(len(open_sockets))).close()
    for sock in open_sockets:
        sock.close()
    wait_for(lambda: get(url + "/health")[1]["in_flight_requests"] == 0, 10)
    health = get(url + "/health")[1]
    assert health["used_blocks"] == {"target": 0} and health["live_sequences"] == {"target": 0}


def test_a_job_cancelled_as_its_sequence_is_made_frees_it(tiny_checkpoint):
    """The race a disconnect can hit: the engine made the scoring sequence, its id is on its way
    back, and the handler is cancelled before it sees it: the sequence must not leak."""
    llm = a1.LLM(tiny_checkpoint, kv_cache_gb=0.02, max_model_len=64)

    async def main() -> None:
        engine = AsyncEngine(llm.pair)
        model, loop = engine.target, asyncio.get_running_loop()
        real = model.add_sequence

        async def made_then_cancelled(token_ids: list[int]) -> int:
            seq_id = await real(token_ids)
            arrived = loop.create_future()
            loop.call_soon(arrived.set_result, seq_id)
            loop.call_soon(job.cancel)  # lands before the job resumes with the id
            return await arrived

        model.add_sequence = made_then_cancelled
        job = asyncio.create_task(run_job(model, Job(None, [0, 5, 6, 7, 8], SamplingParams(max_tokens=4), 0)))
        with pytest.raises(asyncio.CancelledError):
            await job
        assert not llm.pair.target.seqs and llm.pair.target.block_manager.num_used_blocks == 0
        await engine.close()

    asyncio.run(main())


def test_a_generation_longer_than_the_read_timeout_is_answered(server):
    start = time.monotonic()
    status, body = post(server.url + "/v1/completions", {"prompt": [0, 5], "max_tokens": LONG, "ignore_eos": True})
    assert status == 200 and body["usage"]["completion_tokens"] == LONG
    assert time.monotonic() - start > READ_TIMEOUT  # else this proves nothing


def test_stalled_and_trickling_request_heads_are_closed(server):
    head = f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: app".encode()
    sockets = []
    for i in range(60):
        sock = socket.create_connection(("127.0.0.1", server.port))
        if i % 2:
            sock.sendall(head)  # half a request head, then nothing
        sock.setblocking(False)
        sockets.append(sock)
    trickle = socket.create_connection(("127.0.0.1", server.port))
    trickle.setblocking(False)
    start = time.monotonic()
    sent = 0
    while not closed_by_server(trickle):  # a byte every 0.1 s keeps no connection alive for ever
        assert time.monotonic() - start < 4 * READ_TIMEOUT, "the trickling connection was never closed"
        if sent < 200:
            try:
                trickle.send(b"GET /health HTTP/1.1\r\nX-Slow: " [sent:sent + 1] or b"a")
                sent += 1
            except OSError:
                break
        time.sleep(0.1)
    took = time.monotonic() - start
    assert 0.9 * READ_TIMEOUT <= took <= 2.5 * READ_TIMEOUT + 1
    wait_for(lambda: all(closed_by_server(s) for s in sockets), 3 * READ_TIMEOUT, every=0.05)
    for sock in sockets + [trickle]:
        sock.close()
    status, health = get(server.url + "/health")
    assert status == 200 and health["status"] == "ok"
    assert get(server.url + "/metrics")[1]["idle_connections_closed"] >= 61


def test_a_stalled_body_gets_a_408_and_its_connection_closed(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                 f"Content-Type: application/json\r\nContent-Length: 200\r\n\r\n".encode() + b'{"prompt": [0, 5')
    start, answer = time.monotonic(), b""
    while chunk := sock.recv(65536):  # to EOF: the server closes after answering
        answer += chunk
    sock.close()
    assert time.monotonic() - start < 3 * READ_TIMEOUT + 1
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408")
    error = json.loads(body)["error"]
    assert error["code"] == 408 and "did not arrive" in error["message"]


def test_an_idle_kept_alive_connection_is_closed(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")  # answered, and kept alive
    sock.setblocking(False)
    took = wait_for(lambda: closed_by_server(sock), 3 * READ_TIMEOUT, every=0.05)
    sock.close()
    assert took >= 0.5 * READ_TIMEOUT
