"""What a server's version says about its formats and quirks, pinned in one place (each number is
where the servers' sources changed the behaviour; tests/a1/remote/fixtures/ replays each format).

vLLM: the V1 engine (the only one from 0.11, the default from 0.8) returns raw log-probs and
`choices[0].token_ids` (0.10.2+). V0 returns log-probs after temperature scaling and crashes on
prefix caching plus prompt log-probs, so servers older than 0.10.2 are refused.

SGLang: `sampling_params.sampling_seed` exists from 0.5.3 (older servers answer HTTP 500 to an
unknown sampling field) and is an int32 until 0.5.6; a prompt longer than `max_req_input_len`
(`/server_info`, about context length - 6) is aborted."""
from __future__ import annotations

import re
from typing import Optional

Version = tuple[int, ...]

VLLM_MINIMUM: Version = (0, 10, 2)
SGLANG_SEED_SINCE: Version = (0, 5, 3)
SGLANG_SEED_INT64_SINCE: Version = (0, 5, 7)
SGLANG_INPUT_MARGIN = 6  # context length - max_req_input_len where /server_info does not say it


def parse_version(text: object) -> Optional[Version]:
    """(major, minor, patch) of "0.10.2", "0.5.3.post1", "v0.6.6rc1+cu124"; None if not a version."""
    if not isinstance(text, str):
        return None
    match = re.match(r"\s*v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if match is None:
        return None
    return tuple(int(part or 0) for part in match.groups())


def show(version: Optional[Version]) -> str:
    return ".".join(map(str, version)) if version else "an unknown version"


def vllm_refusal(url: str, version: Optional[Version]) -> Optional[str]:
    """Why a1 refuses this vLLM server, or None."""
    if version is None or version >= VLLM_MINIMUM:
        return None
    return (f"{url} runs vLLM {show(version)}; a1 needs vLLM {show(VLLM_MINIMUM)} or later (the V1 engine): older "
            f"servers return log-probs after temperature scaling (V0), crash on prefix caching with prompt "
            f"log-probs, and do not return the generated token ids; upgrade the server")


def sglang_seed_bits(version: Optional[Version]) -> Optional[int]:
    """How many bits of a seed an SGLang server takes in sampling_seed: None where it has no
    sampling_seed (the field would fail the request), 31 where it is an int32, else 63. A server
    whose version is unknown (a1 serve) takes 63."""
    if version is None or version >= SGLANG_SEED_INT64_SINCE:
        return 63
    if version >= SGLANG_SEED_SINCE:
        return 31
    return None
