import pytest

from a1.engine.sampling_params import SamplingParams


def test_defaults_and_normalisation():
    p = SamplingParams(stop="\n\n", top_k=-1, temperature=0)
    assert p.stop == ["\n\n"] and p.stop_token_ids == [] and p.top_k == 0 and p.greedy
    assert p.max_stop_len == 2 and isinstance(p.temperature, float)
    assert SamplingParams().stop == [] and not SamplingParams().greedy


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(temperature=-1), "temperature"),
        (dict(top_k=-2), "top_k"),
        (dict(top_p=0), "top_p"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(min_tokens=5, max_tokens=2), "min_tokens"),
        (dict(stop=[""]), "stop"),
        (dict(stop_token_ids=[-1]), "stop_token_ids"),
        (dict(seed="x"), "seed"),
        (dict(logprobs=1), "logprobs"),
        (dict(stop=123), "stop must be a string or a list of strings"),  # was: 'int' object is not iterable
        (dict(stop_token_ids=7), "stop_token_ids must be a list"),
        (dict(top_p=True), "top_p"),  # was accepted as 1.0
        (dict(top_k=True), "top_k"),
        (dict(temperature=True), "temperature"),
    ],
)
def test_sampling_params_validation(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SamplingParams(**kwargs)
