"""One client never fails another: parameters the kernels would refuse (a temperature that is inf
in float32, a top_p that is 0 there, stop ids that leave nothing to sample) are 400s naming the
field, and a long request in flight while they arrive finishes with exactly the output it gets alone."""
from __future__ import annotations

import threading

from serve_helpers import get, post

VICTIM = {"prompt": [0, 45, 16, 23, 23, 26], "max_tokens": 120, "temperature": 0.8, "seed": 7, "ignore_eos": True,
          "model": "tiny-target"}


def test_attackers_get_400_and_the_victim_its_own_output(served_pair):
    url, _ = served_pair
    status, alone = post(url + "/v1/completions", VICTIM)
    assert status == 200
    result = {}
    victim = threading.Thread(target=lambda: result.update(answer=post(url + "/v1/completions", VICTIM)))
    victim.start()
    attacks = [
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 2, "temperature": 1e39}, "temperature"),
        ("/generate", {"text": "Hi", "sampling_params": {"max_new_tokens": 2, "top_p": 1e-50}}, "top_p"),
        ("/v1/completions", {"prompt": "Hi", "max_tokens": 4, "min_tokens": 2,
                             "stop_token_ids": list(range(98))}, "stop_token_ids"),
    ]
    for path, body, field in attacks:
        status, answer = post(url + path, body)
        assert status == 400 and field in answer["error"]["message"], answer
    victim.join(60)
    status, answer = result["answer"]
    assert status == 200 and answer["choices"][0]["text"] == alone["choices"][0]["text"]
    assert get(url + "/health")[1]["used_blocks"] == {"target": 0, "draft": 0}
