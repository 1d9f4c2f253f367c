"""Every /generate payload a1 writes, checked against SGLang's own request types where the `sglang`
package is installed (no GPU needed: its SamplingParams needs msgspec and torch; the fields of
GenerateReqInput are read from its source, whose module needs the serving stack). Skipped, with
the reason printed, where sglang or msgspec is absent (`pip install --no-deps sglang msgspec`)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from a1.engine.sampling_params import SamplingParams
from a1.remote.sglang_protocol import SGLangProtocol


def _sglang_root() -> tuple[Path | None, str]:
    try:
        spec = importlib.util.find_spec("sglang")
    except (ImportError, ValueError) as err:
        return None, f"sglang cannot be found: {err}"
    if spec is None or not spec.submodule_search_locations:
        return None, "sglang is not installed"
    if importlib.util.find_spec("msgspec") is None:
        return None, "msgspec (sglang's SamplingParams) is not installed"
    return Path(list(spec.submodule_search_locations)[0]), ""


ROOT, REASON = _sglang_root()
if REASON:
    print(f"\nskipping the SGLang schema tests: {REASON}")
pytestmark = pytest.mark.skipif(ROOT is None, reason=REASON or "sglang installed")


@pytest.fixture(scope="module")
def sampling_params_type(tmp_path_factory):
    """sglang.srt.sampling.sampling_params.SamplingParams, loaded without sglang/__init__.py (which
    imports the whole serving stack): its packages stand in as empty namespaces for this module."""
    saved = {name: sys.modules.get(name) for name in ("sglang", "sglang.srt", "sglang.srt.sampling")}
    for name, folder in (("sglang", ROOT), ("sglang.srt", ROOT / "srt"), ("sglang.srt.sampling", ROOT / "srt" / "sampling")):
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    try:
        yield importlib.import_module("sglang.srt.sampling.sampling_params").SamplingParams
    finally:
        for name in [n for n in sys.modules if n.startswith("sglang")]:
            del sys.modules[name]
        sys.modules.update({k: v for k, v in saved.items() if v is not None})


@pytest.fixture(scope="module")
def request_fields() -> set[str]:
    """The fields of GenerateReqInput (and of its base classes in the same file)."""
    tree = ast.parse((ROOT / "srt" / "managers" / "io_struct.py").read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}

    def fields(name: str) -> set[str]:
        node = classes[name]
        own = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)}
        bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in classes]
        return own.union(*(fields(b) for b in bases))

    return fields("GenerateReqInput")


PARAMS = [
    SamplingParams(temperature=0.7, top_p=0.95, max_tokens=64, seed=2 ** 40 + 3, logprobs=True, stop=["\n\n"],
                   include_stop_str_in_output=True),
    SamplingParams(temperature=0.0, max_tokens=16, ignore_eos=True, min_tokens=4),
    SamplingParams(temperature=1.0, top_k=20, max_tokens=8, stop_token_ids=[1, 2], seed=5),
]


class _Tokenizer:
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) % 90 + 2 for c in text]


@pytest.mark.parametrize("seed_bits", [63, 31, None])
def test_every_payload_fits_sglangs_request_types(sampling_params_type, request_fields, seed_bits):
    protocol = SGLangProtocol("sglang", None, vocab_size=100)
    protocol.seed_bits = seed_bits
    payloads = [protocol.generate_request([0, 5, 6, 7], params) for params in PARAMS]
    payloads.append(protocol.score_request([0, 5, 6, 7, 8], 3))
    for payload in payloads:
        assert set(payload) <= request_fields, set(payload) - request_fields
        sampling = sampling_params_type(**payload["sampling_params"])  # an unknown field raises TypeError
        sampling.normalize(_Tokenizer())
        sampling.verify(100)
        if seed_bits is None:
            assert "sampling_seed" not in payload["sampling_params"]
        elif "sampling_seed" in payload["sampling_params"]:
            assert 0 <= payload["sampling_params"]["sampling_seed"] < 2 ** seed_bits
