"""Helpers of the serve and remote tests: a tiny random llama checkpoint written straight to disk
(safetensors + the models tests' trained BPE tokenizer; no transformers needed), `a1 serve` as a
subprocess on a free port, and stdlib HTTP calls (every call has a timeout)."""
from __future__ import annotations

import http.client
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))

from tiny_checkpoints import save_tokenizer, train_tokenizer  # noqa: E402

TINY_CONFIG = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=320, max_position_embeddings=1024,
    rms_norm_eps=1e-5, rope_theta=10000.0, bos_token_id=0, eos_token_id=0, tie_word_embeddings=False,
    hidden_act="silu", torch_dtype="float32",
)


def write_tiny_checkpoint(directory: Path, seed: int = 0, **overrides: Any) -> Path:
    """A random llama checkpoint (HF layout) with a ChatML template; same tokenizer for every seed."""
    config = {**TINY_CONFIG, **overrides}
    g = torch.Generator().manual_seed(seed)
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    q_rows = config["num_attention_heads"] * config["head_dim"]
    kv_rows = config["num_key_value_heads"] * config["head_dim"]

    def rand(*shape: int, scale: float = 0.15) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g)).contiguous()

    def norm() -> torch.Tensor:
        return (1.0 + 0.2 * torch.randn(hidden, generator=g)).contiguous()

    tensors = {"model.embed_tokens.weight": rand(vocab, hidden, scale=1.0), "model.norm.weight": norm(),
               "lm_head.weight": rand(vocab, hidden, scale=0.4)}
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        tensors.update({
            p + "self_attn.q_proj.weight": rand(q_rows, hidden), p + "self_attn.k_proj.weight": rand(kv_rows, hidden),
            p + "self_attn.v_proj.weight": rand(kv_rows, hidden), p + "self_attn.o_proj.weight": rand(hidden, q_rows),
            p + "mlp.gate_proj.weight": rand(inter, hidden), p + "mlp.up_proj.weight": rand(inter, hidden),
            p + "mlp.down_proj.weight": rand(hidden, inter), p + "input_layernorm.weight": norm(),
            p + "post_attention_layernorm.weight": norm(),
        })
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    (directory / "config.json").write_text(json.dumps(config))
    save_tokenizer(train_tokenizer(), directory)
    return directory


# ---------------------------------------------------------------------- HTTP (stdlib)
def request_json(method: str, url: str, body: Any = None, timeout: float = 60.0, raw: Optional[bytes] = None,
                 headers: Optional[dict] = None):
    """(status, decoded JSON body) of one request; HTTP errors are returned, not raised. headers:
    added to (or, with None values, removed from) Content-Type: application/json."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    sent = {k: v for k, v in {"Content-Type": "application/json", **(headers or {})}.items() if v is not None}
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def post(url: str, body: Any, timeout: float = 60.0):
    return request_json("POST", url, body, timeout)


def get(url: str, timeout: float = 30.0, headers: Optional[dict] = None):
    return request_json("GET", url, None, timeout, headers=headers)


def raw_request(url: str, method: str, path: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
                timeout: float = 60.0) -> tuple[int, dict, bytes]:
    """One request with exactly the headers given (bytes values go out as they are: any octets a
    client may send); (status, headers, body) of the answer."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        names = {k.lower() for k in (headers or {})}
        if "host" not in names:
            conn.putheader("Host", f"{host}:{port}")
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None and "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# ---------------------------------------------------------------------- a1 serve in this process
@contextmanager
def serving(model: str, max_model_len: int = 64, kv_cache_gb: float = 0.02, **app_options) -> Iterator:
    """A fresh a1.LLM of model served from a thread (create_app's options); yields the ServerThread."""
    import a1
    from a1.serve import ServerThread, create_app

    llm = a1.LLM(model, kv_cache_gb=kv_cache_gb, max_model_len=max_model_len)
    thread = ServerThread(create_app(llm, **app_options)).start()
    try:
        yield thread
    finally:
        thread.stop()


# ---------------------------------------------------------------------- a1 serve in a subprocess
class ServerProcess:
    """`python -m a1.serve --port 0 ARGS` on 127.0.0.1; url once it printed where it listens."""

    def __init__(self, *args: str, startup_timeout: float = 120.0, env: Optional[dict] = None) -> None:
        self._log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "a1.serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=self._log, text=True, env=env,
        )
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in self.proc.stdout], daemon=True).start()
        deadline = time.monotonic() + startup_timeout
        self.url = None
        while self.url is None:
            try:
                line = lines.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"a1 serve did not start (exit {self.proc.returncode}): {self.log()}")
                continue
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text()[-3000:]

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
