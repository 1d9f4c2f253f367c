"""decide: the three regions of the p-value and the argument checks."""
import math

import pytest

from a1.policy.decide import decide


@pytest.mark.parametrize("p,expected", [
    (0.0, "takeover"), (0.01, "takeover"), (0.05, "takeover"),      # p <= alpha_takeover
    (0.050001, "resample"), (0.1, "resample"), (0.2, "resample"),   # alpha_takeover < p <= alpha_resample
    (0.200001, "accept"), (0.5, "accept"), (1.0, "accept"),         # p > alpha_resample
])
def test_two_levels(p, expected):
    assert decide(p, 0.05, 0.2) == expected


@pytest.mark.parametrize("p,expected", [(0.0, "takeover"), (0.1, "takeover"), (0.1000001, "accept"), (1.0, "accept")])
def test_one_level(p, expected):
    assert decide(p, 0.1) == expected
    assert decide(p, 0.1, None) == expected


def test_equal_levels_never_resample():
    assert [decide(p, 0.1, 0.1) for p in (0.05, 0.1, 0.2)] == ["takeover", "takeover", "accept"]


@pytest.mark.parametrize("args,name", [
    ((0.5, 0.0), "alpha_takeover"), ((0.5, 1.0), "alpha_takeover"), ((0.5, math.nan), "alpha_takeover"),
    ((0.5, 0.1, 1.5), "alpha_resample"), ((0.5, 0.1, 0.0), "alpha_resample"),
    ((0.5, 0.2, 0.1), "alpha_resample"),  # alpha_resample < alpha_takeover
    ((math.nan, 0.1), "p"), ((-0.1, 0.1), "p"), ((1.5, 0.1, 0.2), "p"),
])
def test_errors_name_the_argument(args, name):
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        decide(*args)
