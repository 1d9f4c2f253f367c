"""`a1 serve`: the embedded engine (one model or a draft/target pair) behind the OpenAI-compatible
/v1/completions (vLLM's dialect: token-id prompts, prompt_logprobs, echo + logprobs) and SGLang's
native /generate, plus /v1/models, /health and /metrics. `main(argv)` is the CLI entry point;
`create_app(llm)` builds the aiohttp application around an already loaded a1.LLM. Safe on a network:
an API key, a Host check against DNS rebinding, JSON-only POSTs, read deadlines, no 5xx from any
client input (README, "Exposing `a1 serve`")."""
from .app import ServerState, create_app
from .cli import build_parser, main
from .config import ServeConfig
from .errors import RequestError
from .runner import ServerThread

__all__ = ["ServeConfig", "ServerState", "ServerThread", "RequestError", "build_parser", "create_app", "main"]
