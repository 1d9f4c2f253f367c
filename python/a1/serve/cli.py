"""`a1 serve --model M [--draft D] [--host 127.0.0.1] [--port 8000] [--api-key K] [--allowed-hosts H]`:
our engine behind the OpenAI (vLLM) and SGLang APIs."""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Optional

from a1.models.config import DTYPE_NAMES

from .config import ServeConfig
from .security import ENV_API_KEY


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="a1 serve", description=__doc__)
    parser.add_argument("--model", required=True, help="target: an HF directory, a GGUF file or a built-in name")
    parser.add_argument("--draft", default=None, help="a draft of the same vocabulary, served beside the model")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: a free one, printed at start-up)")
    parser.add_argument("--kv-cache-gb", type=float, default=None, help="KV budget of both models together")
    parser.add_argument("--max-model-len", type=int, default=None, help="longest sequence (default: the model's)")
    parser.add_argument("--dtype", choices=DTYPE_NAMES, default=None,
                        help="load the weights in this dtype (default: a GGUF runs quantized, other checkpoints "
                             "in float32)")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="sequences per engine step")
    parser.add_argument("--seed", type=int, default=0, help="seeds the requests that give no seed")
    parser.add_argument("--api-key", default=None,
                        help=f"require 'Authorization: Bearer KEY' on every endpoint but /health (default: the "
                             f"{ENV_API_KEY} environment variable; prefer it: a flag shows in the process list)")
    parser.add_argument("--allowed-hosts", default=None,
                        help="comma-separated Host header names accepted (ports ignored; '*': any; "
                             "'.example.com': a domain and its subdomains); default: loopback names only when "
                             "bound to loopback, any otherwise. Loopback names are always accepted")
    parser.add_argument("--read-timeout", type=float, default=60.0,
                        help="seconds a client has to send a request head or body, or to take its answer (default 60)")
    parser.add_argument("--max-request-bytes", type=int, default=64 << 20,
                        help="largest request body accepted (default 64 MiB; larger: 413)")
    return parser


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    api_key = args.api_key if args.api_key is not None else os.environ.get(ENV_API_KEY) or None  # the flag wins
    hosts = None if args.allowed_hosts is None else tuple(h for h in args.allowed_hosts.split(",") if h.strip())
    return ServeConfig(model=args.model, draft=args.draft, host=args.host, port=args.port,
                       kv_cache_gb=args.kv_cache_gb, max_model_len=args.max_model_len, dtype=args.dtype,
                       max_num_seqs=args.max_num_seqs, seed=args.seed, max_request_bytes=args.max_request_bytes,
                       api_key=api_key, allowed_hosts=hosts, read_timeout=args.read_timeout)


def load_llm(config: ServeConfig):
    from a1.llm import LLM
    from a1.models.loader import dtype_named

    return LLM(config.model, draft=config.draft, kv_cache_gb=config.kv_cache_gb, dtype=dtype_named(config.dtype),
               max_model_len=config.max_model_len, max_num_seqs=config.max_num_seqs, seed=config.seed)


def run(config: ServeConfig) -> int:
    from .app import create_app
    from .runner import serve_forever

    try:
        llm = load_llm(config)
    except (OSError, ValueError, TypeError) as err:
        print(f"a1 serve: error: cannot load the model: {err}", file=sys.stderr)
        return 2
    app = create_app(llm, config.max_request_bytes, api_key=config.api_key, allowed_hosts=config.allowed_hosts,
                     read_timeout=config.read_timeout)
    try:
        asyncio.run(serve_forever(app, config.host, config.port, lambda line: print(line, flush=True)))
    except OSError as err:  # the port is taken, the host cannot be bound, ...
        print(f"a1 serve: error: cannot listen on {config.host}:{config.port}: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as err:
        print(f"a1 serve: error: {err}", file=sys.stderr)
        return 2
    return run(config)
