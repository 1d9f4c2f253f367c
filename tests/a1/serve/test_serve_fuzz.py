"""No client input gets a 5xx from `a1 serve`. The issue's reproducers and their kin get a 400
naming the field: a lone surrogate in any string (the HF tokenizer raised TypeError), 100,000
nested `[` (RecursionError), NaN / Infinity / 1e400, integers beyond 64 bits, text the tokenizer
refuses. Then properties over generated requests (random JSON, mutated valid requests of both
APIs, raw byte edits, random methods, paths and headers): every status < 500, every error JSON, and
afterwards the server answers /health with every KV block free."""
from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serve_helpers import get, post, raw_request, request_json, serving

KEY = "fuzz-key"
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """The tiny llama with its real BPE tokenizer; max_model_len 64 keeps every accepted request short."""
    with serving(tiny_checkpoint, max_model_len=64) as thread:
        yield thread.url


def send(url: str, path: str, raw: bytes, method: str = "POST", headers=None):
    status, answer_headers, body = raw_request(url, method, path, raw, {**JSON, **(headers or {})}, timeout=60)
    assert status < 500, (status, raw[:300], body[:300])
    if body and not (status == 400 and answer_headers.get("Content-Type", "").startswith("text/plain")):
        answer = json.loads(body)  # only aiohttp's own refusal of a malformed HTTP request is plain text
        assert status < 400 or answer["error"]["code"] == status
    return status, body


def assert_healthy(url: str) -> None:
    status, health = get(url + "/health")
    assert status == 200 and health["status"] == "ok" and health["in_flight_requests"] == 0
    assert set(health["used_blocks"].values()) == {0} and set(health["live_sequences"].values()) == {0}


# ---------------------------------------------------------------------- the reproducers, field by field
NAMED = [
    ("/v1/completions", b'{"prompt": "\\ud800", "max_tokens": 2}', "prompt"),
    ("/v1/completions", b'{"prompt": ["a\\udfffb"], "max_tokens": 2}', "prompt[0]"),
    ("/v1/completions", b'{"prompt": "hi", "max_tokens": 2, "stop": ["ok", "\\udc00"]}', "stop[1]"),
    ("/v1/completions", b'{"prompt": "hi", "model": "\\ud800"}', "model"),
    ("/v1/completions", b'{"prompt": "hi", "\\ud800": 1}', None),
    ("/v1/completions", b'{"prompt": "hi", "temperature": NaN}', "temperature"),
    ("/v1/completions", b'{"prompt": "hi", "top_p": -Infinity}', "top_p"),
    ("/v1/completions", b'{"prompt": "hi", "temperature": 1e400}', "temperature"),
    ("/v1/completions", b'{"prompt": "hi", "logit_bias": {"5": NaN}}', "logit_bias.5"),
    ("/v1/completions", b'{"prompt": "hi", "seed": 18446744073709551616}', "seed"),
    ("/v1/completions", b'{"prompt": "hi", "top_k": 1180591620717411303424}', "top_k"),
    ("/v1/completions", b'{"prompt": [0, 5, 99999999999999999999999]}', "prompt[2]"),
    ("/v1/completions", b'{"prompt": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}", "prompt"),
    ("/v1/completions", b"[" * 100_000, None),
    ("/v1/completions", b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
    ("/v1/completions", b'{"prompt": "hi", "max_tokens": ' + b"9" * 5000 + b"}", None),
    ("/v1/completions", b'{"prompt": "\xed\xa0\x80"}', "prompt"),  # as UTF-8 bytes: json decodes them as such
    ("/generate", b'{"text": "\\ud800"}', "text"),
    ("/generate", b'{"text": "hi", "sampling_params": {"stop": ["\\udfff"]}}', "sampling_params.stop[0]"),
    ("/generate", b'{"text": "hi", "sampling_params": {"temperature": Infinity}}', "sampling_params.temperature"),
    ("/generate", b'{"input_ids": [1e400]}', "input_ids[0]"),
    ("/generate", b'{"input_ids": [0, 5], "sampling_params": {"sampling_seed": -9223372036854775809}}',
     "sampling_params.sampling_seed"),
    ("/generate", b'{"input_ids": [0, 5], "sampling_params": ' + b"{\"a\": " * 50 + b"1" + b"}" * 51,
     "sampling_params"),
]


@pytest.mark.parametrize("path, raw, field", NAMED, ids=[f"{p}:{r[:40]!r}" for p, r, _ in NAMED])
def test_hostile_bodies_get_a_400_naming_the_field(server, path, raw, field):
    status, body = send(server, path, raw)
    error = json.loads(body)["error"]
    assert status == 400 and error["param"] == field and error["type"] == "BadRequestError", error
    assert len(error["message"]) <= 400


def test_text_the_tokenizer_refuses_is_the_clients_fault(served_pair):
    url, _ = served_pair  # the character tokenizer has no "é" (it raises KeyError)
    for path, body, field in [("/v1/completions", {"prompt": "héllo", "max_tokens": 2}, "prompt"),
                              ("/generate", {"text": "héllo"}, "text")]:
        status, answer = post(url + path, body)
        assert status == 400 and answer["error"]["param"] == field
        assert "cannot be tokenized" in answer["error"]["message"]


def test_huge_bodies_are_refused_with_413(tiny_checkpoint):
    with serving(tiny_checkpoint, max_request_bytes=4096) as thread:
        status, answer = request_json("POST", thread.url + "/v1/completions", {"prompt": "x" * 5000})
        assert status == 413 and answer["error"]["type"] == "RequestTooLargeError"
        assert post(thread.url + "/v1/completions", {"prompt": [0, 5], "max_tokens": 1})[0] == 200


# ---------------------------------------------------------------------- generated requests
TEXT = st.text(st.one_of(st.characters(exclude_categories=()), st.characters(categories=["Cs"]),
                         st.sampled_from(list("ab \n\x00\x7f\xe9\u4e2d\U0001f600\ufeff"))), max_size=12)
NUMBERS = st.one_of(st.integers(-3, 70), st.integers(), st.integers(-(2 ** 80), 2 ** 80),
                    st.sampled_from([2 ** 63 - 1, 2 ** 63, -(2 ** 63) - 1, 2 ** 64]),
                    st.floats(), st.sampled_from([1e-45, 3.5e38, 1e308, -0.0, 0.5]))
HOSTILE_TEXT = ["\ud800", "a\udfffb", "\udc00\ud800", "\x00", "\u00e9t\u00e9"]
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT,
                   st.sampled_from(["", "tiny", "target", "draft"] + HOSTILE_TEXT))
COMPLETION_FIELDS = ["prompt", "max_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids", "seed",
                     "logprobs", "prompt_logprobs", "echo", "n", "best_of", "stream", "model", "min_tokens",
                     "ignore_eos", "add_special_tokens", "logit_bias", "presence_penalty", "repetition_penalty",
                     "return_token_ids", "return_tokens_as_token_ids", "include_stop_str_in_output", "suffix",
                     "skip_special_tokens", "use_beam_search", "prompt_embeds"]
GENERATE_FIELDS = ["input_ids", "text", "sampling_params", "return_logprob", "logprob_start_len",
                   "top_logprobs_num", "return_text_in_logprobs", "stream", "model", "token_ids_logprob"]
SAMPLING_FIELDS = ["max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids",
                   "ignore_eos", "sampling_seed", "no_stop_trim", "skip_special_tokens", "n", "json_schema", "regex",
                   "frequency_penalty", "repetition_penalty"]
KEYS = st.one_of(TEXT, st.sampled_from(COMPLETION_FIELDS + GENERATE_FIELDS + SAMPLING_FIELDS))
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=10)
PROMPTS = st.one_of(st.sampled_from([[0, 5, 6], "hello there", ["hi"], [[0, 5]], [319], [], *HOSTILE_TEXT]),
                    st.lists(st.integers(0, 319), min_size=1, max_size=70), VALUES)


@st.composite
def completion_bodies(draw) -> bytes:
    body = {"prompt": draw(PROMPTS), "max_tokens": draw(st.sampled_from([1, 2, 0, 40]))}
    body.update(draw(st.dictionaries(st.sampled_from(COMPLETION_FIELDS), VALUES, max_size=4)))
    return json.dumps(body).encode()  # ensure_ascii: a surrogate goes as a \\udXXX escape; NaN as NaN


@st.composite
def generate_bodies(draw) -> bytes:
    body = {draw(st.sampled_from(["input_ids", "text"])): draw(PROMPTS),
            "sampling_params": {"max_new_tokens": draw(st.sampled_from([1, 2, 0, 40]))}}
    body["sampling_params"].update(draw(st.dictionaries(st.sampled_from(SAMPLING_FIELDS), VALUES, max_size=3)))
    body.update(draw(st.dictionaries(st.sampled_from(GENERATE_FIELDS), VALUES, max_size=3)))
    return json.dumps(body).encode()


LITERALS = [b"1e400", b"-1e400", b"NaN", b"-Infinity", b"1" * 4400, b"9" * 30, b"-0", b"1e-400", b"[" * 3000,
            b'"\\ud800"', b'"\\udc00\\ud800"', b'"\xed\xa0\x80"', b"\xff", b"{}", b"[]", b"null", b"true", b"0.0"]


@st.composite
def raw_bodies(draw) -> bytes:
    """A valid body with a literal swapped in, or bytes inserted, or cut short; or any bytes at all."""
    raw = draw(st.one_of(completion_bodies(), generate_bodies()))
    how = draw(st.sampled_from(["literal", "insert", "truncate", "binary"]))
    if how == "literal":
        return b'{"prompt": [0, 5], "max_tokens": 1, "%s": %s}' % (
            draw(st.sampled_from(COMPLETION_FIELDS + GENERATE_FIELDS)).encode(), draw(st.sampled_from(LITERALS)))
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        return raw[:at] + draw(st.binary(max_size=8) | st.sampled_from(LITERALS)) + raw[at:]
    if how == "truncate":
        return raw[: draw(st.integers(0, len(raw)))]
    return draw(st.binary(max_size=64))


@pytest.mark.parametrize("path, bodies", [("/v1/completions", completion_bodies()), ("/generate", generate_bodies()),
                                          ("/v1/completions", raw_bodies()), ("/generate", raw_bodies())],
                         ids=["completions", "generate", "completions-raw", "generate-raw"])
def test_generated_bodies_never_get_a_5xx(server, path, bodies):
    statuses = set()

    @SETTINGS
    @given(raw=bodies)
    def check(raw: bytes) -> None:
        statuses.add(send(server, path, raw)[0])

    check()
    assert 400 in statuses  # the generators reach the checks (and, for the valid ones, the engine)
    assert_healthy(server)


METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
PATHS = st.one_of(st.sampled_from(["/v1/completions", "/generate", "/v1/models", "/get_model_info", "/health",
                                   "/metrics", "/", "//health", "/health/", "/v1/models?x=%ED%A0%80",
                                   "/%ED%A0%80", "/%00", "/v1/completions/../health"]),
                  TEXT.map(lambda t: "/" + quote(t.encode("utf-8", "surrogatepass"), safe="/?=&%")))
HEADER_VALUES = st.one_of(st.binary(max_size=24).map(lambda b: bytes(c for c in b if c not in b"\r\n")),
                          st.sampled_from([b"", b"Bearer " + KEY.encode(), b"bearer " + KEY.encode(),
                                           b"application/json", b"text/plain", b"application/json; charset=utf-16",
                                           b"gzip", b"deflate", b"br", b"localhost", b"[::1]:1", b"evil.example",
                                           b"\xff\xfe", b"a" * 5000]))
HEADER_NAMES = st.sampled_from(["Host", "Authorization", "Content-Type", "Content-Encoding", "Accept",
                                "Connection", "Origin", "Expect"])


def test_generated_requests_never_get_a_5xx(tiny_checkpoint):
    """Methods, paths and headers (keyed server on loopback: the Host, key and type checks all run)."""
    with serving(tiny_checkpoint, max_model_len=64, api_key=KEY) as thread:
        url = thread.url

        @SETTINGS
        @given(method=METHODS, path=PATHS, headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=4),
               raw=st.one_of(st.none(), completion_bodies(), raw_bodies()))
        def check(method: str, path: str, headers: dict, raw) -> None:
            send(url, path, raw, method, {"Authorization": f"Bearer {KEY}", **headers})

        check()
        assert_healthy(url)
