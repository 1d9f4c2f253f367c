"""`a1 serve --model M [--draft D] [--host 127.0.0.1] [--port 8000]`: our engine behind the
OpenAI (vLLM) and SGLang APIs."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Optional

from .config import ServeConfig


def build_parser(parser: Optional[argparse.ArgumentParser] = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="a1 serve", description=__doc__)
    parser.add_argument("--model", required=True, help="target: an HF directory, a GGUF file or a built-in name")
    parser.add_argument("--draft", default=None, help="a draft of the same vocabulary, served beside the model")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: a free one, printed at start-up)")
    parser.add_argument("--kv-cache-gb", type=float, default=None, help="KV budget of both models together")
    parser.add_argument("--max-model-len", type=int, default=None, help="longest sequence (default: the model's)")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="sequences per engine step")
    parser.add_argument("--seed", type=int, default=0, help="seeds the requests that give no seed")
    return parser


def config_from_args(args: argparse.Namespace) -> ServeConfig:
    return ServeConfig(model=args.model, draft=args.draft, host=args.host, port=args.port,
                       kv_cache_gb=args.kv_cache_gb, max_model_len=args.max_model_len,
                       max_num_seqs=args.max_num_seqs, seed=args.seed)


def load_llm(config: ServeConfig):
    from a1.llm import LLM

    return LLM(config.model, draft=config.draft, kv_cache_gb=config.kv_cache_gb,
               max_model_len=config.max_model_len, max_num_seqs=config.max_num_seqs, seed=config.seed)


def run(config: ServeConfig) -> int:
    from .app import create_app
    from .runner import serve_forever

    try:
        llm = load_llm(config)
    except (OSError, ValueError, TypeError) as err:
        print(f"a1 serve: error: cannot load the model: {err}", file=sys.stderr)
        return 2
    app = create_app(llm, config.max_request_bytes)
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
