"""The arith generator: the bundled file is its output, answers are the computations, texts are
distinct (so the calibration and test splits never share a question), and it loads like the others."""
from __future__ import annotations

import ast
import operator

import pytest

from a1.data import arith, format_prompt, load_dataset
from a1.data.prompts import family_of

_OPS = {ast.Add: operator.add, ast.Mult: operator.mul}


def _evaluate(expression: str) -> int:
    node = ast.parse(expression, mode="eval").body
    assert isinstance(node, ast.BinOp) and type(node.op) in _OPS
    return _OPS[type(node.op)](node.left.value, node.right.value)


def test_regenerating_gives_the_bundled_file(tmp_path) -> None:
    path = arith.write(tmp_path / "arith.jsonl")
    assert path.read_bytes() == arith.default_path().read_bytes()


def test_answers_are_computed_and_texts_distinct() -> None:
    problems = arith.generate()
    assert len(problems) == arith.COUNT and len({p.problem for p in problems}) == len(problems)
    for p in problems:
        assert p.answer == _evaluate(p.expression)
        a, b = (int(x) for x in p.expression.replace("*", "+").split("+"))
        assert 2 <= a <= 9 and 2 <= b <= 9 and str(a) in p.problem and str(b) in p.problem
    assert {p.kind for p in problems} == set(arith.KINDS)


def test_seeded_and_checked() -> None:
    assert arith.generate(20, seed=1) == arith.generate(20, seed=1) != arith.generate(20, seed=2)
    assert [p.id for p in arith.generate(3)] == ["arith-0000", "arith-0001", "arith-0002"]
    with pytest.raises(ValueError, match="count must be an int >= 1"):
        arith.generate(0)


def test_loads_as_a_bundled_dataset() -> None:
    cal, test = load_dataset("arith", split="calibration"), load_dataset("arith", split="test")
    assert not {p.problem for p in cal} & {p.problem for p in test}
    first = test[0]
    assert first.dataset == "arith" and first.extra["kind"] in arith.KINDS and first.answer.isdigit()
    assert family_of("arith") == "gsm8k"
    assert first.problem in format_prompt(first) and "\\boxed{}" in format_prompt(first)
