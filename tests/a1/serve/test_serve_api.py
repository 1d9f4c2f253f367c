"""`a1 serve`'s two APIs against the embedded engine: /v1/completions (token-id and text prompts,
prompt_logprobs, echo + logprobs, token ids) and SGLang's /generate (logprob_start_len); bad
requests get a 4xx JSON error naming the field; requests over max_model_len are refused; every
KV block is free once the requests are answered, also under concurrent clients."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from a1.engine.sampling_params import SamplingParams
from serve_helpers import get, post, request_json

PROMPT = [0, 45, 16, 23, 23, 26, 96, 31, 19, 16, 29, 16]  # "<s>Hello there"


def test_completions_match_the_embedded_engine(served_pair):
    url, local = served_pair
    status, body = post(url + "/v1/completions", {
        "prompt": PROMPT, "max_tokens": 8, "temperature": 0.8, "seed": 3, "logprobs": 1, "prompt_logprobs": 0,
        "return_token_ids": True, "model": "tiny-target"})
    assert status == 200
    expected = local.generate(PROMPT, SamplingParams(max_tokens=8, temperature=0.8, seed=3, logprobs=True))[0]
    choice = body["choices"][0]
    assert choice["token_ids"] == expected.token_ids and choice["text"] == expected.text
    assert choice["prompt_token_ids"] == PROMPT and choice["finish_reason"] == expected.finish_reason
    assert choice["logprobs"]["token_logprobs"] == pytest.approx(expected.logprobs, abs=1e-5)
    reference = local.score(PROMPT[:1], PROMPT[1:]).token_logprobs
    prompt_logprobs = choice["prompt_logprobs"]
    assert prompt_logprobs[0] is None and len(prompt_logprobs) == len(PROMPT)
    assert [e[str(t)]["logprob"] for t, e in zip(PROMPT[1:], prompt_logprobs[1:])] == pytest.approx(reference, abs=1e-5)
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 8, "total_tokens": 20}


def test_echo_logprobs_text_prompts_and_the_draft_model(served_pair, char_tokenizer):
    url, local = served_pair
    status, body = post(url + "/v1/completions", {"prompt": "Hello there", "max_tokens": 0, "echo": True,
                                                   "logprobs": 0, "model": "tiny-draft"})
    assert status == 200
    logprobs = body["choices"][0]["logprobs"]
    ids = char_tokenizer.encode("Hello there", add_special_tokens=True)
    assert logprobs["token_logprobs"][0] is None and len(logprobs["tokens"]) == len(ids)
    reference = local.pair.draft  # the draft model scored it
    seq = reference.add_sequence(ids[:1])
    expected = reference.score(seq, ids[1:], keep=False).token_logprobs
    reference.free(seq)
    assert logprobs["token_logprobs"][1:] == pytest.approx(expected, abs=1e-5)
    assert body["choices"][0]["text"] == "Hello there" and body["model"] == "tiny-draft"  # the prompt as sent


def test_sglang_generate_scores_from_logprob_start_len(served_pair):
    url, local = served_pair
    status, body = post(url + "/generate", {"input_ids": PROMPT, "return_logprob": True, "logprob_start_len": 5,
                                             "sampling_params": {"max_new_tokens": 6, "temperature": 0.0,
                                                                 "no_stop_trim": True}})
    assert status == 200
    expected = local.generate(PROMPT, SamplingParams(max_tokens=6, temperature=0.0))[0]
    meta = body["meta_info"]
    assert body["output_ids"] == expected.token_ids and body["text"] == expected.text
    assert [e[1] for e in meta["input_token_logprobs"]] == PROMPT[5:]
    reference = local.score(PROMPT[:5], PROMPT[5:]).token_logprobs
    assert [e[0] for e in meta["input_token_logprobs"]] == pytest.approx(reference, abs=1e-5)
    assert [e[1] for e in meta["output_token_logprobs"]] == expected.token_ids
    assert meta["finish_reason"] == {"type": "length", "length": 6} and meta["prompt_tokens"] == len(PROMPT)


BAD_COMPLETIONS = [
    ({"prompt": PROMPT, "max_tokens": -1}, 400, "max_tokens"),
    ({"prompt": PROMPT, "max_tokens": "8"}, 400, "max_tokens"),
    ({"prompt": [0, 999]}, 400, "prompt"),
    ({"prompt": []}, 400, "prompt"),
    ({"prompt": [[0, 1], [0, 2]]}, 400, "prompt"),
    ({"max_tokens": 4}, 400, "prompt"),
    ({"prompt": PROMPT, "temperature": "hot"}, 400, "temperature"),
    ({"prompt": PROMPT, "temperature": -1}, 400, "temperature"),
    ({"prompt": PROMPT, "top_p": 2.0}, 400, "top_p"),
    ({"prompt": PROMPT, "top_k": -5}, 400, "top_k"),
    ({"prompt": PROMPT, "stop": [""]}, 400, "stop"),
    ({"prompt": PROMPT, "logprobs": 5}, 400, "logprobs"),
    ({"prompt": PROMPT, "prompt_logprobs": 3}, 400, "prompt_logprobs"),
    ({"prompt": PROMPT, "stream": True}, 400, "stream"),
    ({"prompt": PROMPT, "n": 2}, 400, "n"),
    ({"prompt": PROMPT, "presence_penalty": 0.5}, 400, "presence_penalty"),
    ({"prompt": PROMPT, "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": PROMPT, "seed": 1.5}, 400, "seed"),
    ({"prompt": PROMPT, "min_tokens": 9, "max_tokens": 4}, 400, "min_tokens"),
    ({"prompt": PROMPT, "model": "nope"}, 404, "model"),
    ({"prompt": PROMPT, "max_tokens": 250}, 400, "max_tokens"),  # 12 + 250 > max_model_len 256
    ({"prompt": [2] * 300, "max_tokens": 1}, 400, "prompt"),
    ([1, 2, 3], 400, None),
]
BAD_GENERATES = [
    ({"sampling_params": {}}, 400, "input_ids"),
    ({"input_ids": PROMPT, "text": "x"}, 400, "input_ids"),
    ({"input_ids": [[0, 1]]}, 400, "input_ids"),
    ({"input_ids": PROMPT, "sampling_params": {"max_new_tokens": "x"}}, 400, "sampling_params.max_new_tokens"),
    ({"input_ids": PROMPT, "sampling_params": {"top_p": 0}}, 400, "sampling_params.top_p"),
    ({"input_ids": PROMPT, "sampling_params": {"max_new_tokens": 300}}, 400, "sampling_params.max_new_tokens"),
    ({"input_ids": PROMPT, "sampling_params": []}, 400, "sampling_params"),
    ({"input_ids": PROMPT, "return_logprob": True, "logprob_start_len": 40}, 400, "logprob_start_len"),
    ({"input_ids": PROMPT, "top_logprobs_num": 2}, 400, "top_logprobs_num"),
]


@pytest.mark.parametrize("path, body, status, field",
                         [("/v1/completions", *case) for case in BAD_COMPLETIONS]
                         + [("/generate", *case) for case in BAD_GENERATES])
def test_bad_requests_get_a_4xx_naming_the_field(served_pair, path, body, status, field):
    url, _ = served_pair
    got, answer = post(url + path, body)
    assert got == status, answer
    assert answer["error"]["param"] == field and answer["error"]["message"]
    assert "Traceback" not in answer["error"]["message"]


def test_malformed_bodies_and_unknown_routes_answer_json(served_pair):
    url, _ = served_pair
    status, answer = request_json("POST", url + "/v1/completions", raw=b"{not json")
    assert status == 400 and "not valid JSON" in answer["error"]["message"]
    status, answer = get(url + "/v2/nothing")
    assert status == 404 and answer["error"]["code"] == 404
    status, answer = request_json("GET", url + "/v1/completions")
    assert status == 405


def test_models_health_and_metrics(served_pair):
    url, _ = served_pair
    status, models = get(url + "/v1/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny-target", "tiny-draft"]
    assert all(m["max_model_len"] == 256 for m in models["data"])
    status, info = get(url + "/get_model_info")
    assert status == 200 and info["model_path"] == "tiny-target"
    status, metrics = get(url + "/metrics")
    assert status == 200 and metrics["engine"]["target"]["steps"] > 0 and metrics["requests"]["rejected"] > 0


def test_concurrent_clients_all_answered_and_every_block_freed(served_pair):
    url, local = served_pair
    bodies = [{"prompt": PROMPT[: 4 + i % 8], "max_tokens": 6, "temperature": 0.7, "seed": i, "prompt_logprobs": 0}
              for i in range(24)]
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda b: post(url + "/v1/completions", b), bodies))
    assert all(status == 200 for status, _ in answers)
    for body, (_, answer) in zip(bodies[:4], answers[:4]):
        expected = local.generate(body["prompt"], SamplingParams(max_tokens=6, temperature=0.7, seed=body["seed"]))[0]
        assert answer["choices"][0]["text"] == expected.text
    status, health = get(url + "/health")
    assert health["used_blocks"] == {"target": 0, "draft": 0} and health["in_flight_requests"] == 0
