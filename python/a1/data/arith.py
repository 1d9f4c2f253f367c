"""`arith`: short arithmetic word problems made by a seeded generator, answers computed.

Why it exists: the bundled demo model (SmolLM2-135M-Instruct) scores 0% on GSM8K, so no accuracy
comparison between methods means anything there. On these one-operation problems with one-digit
numbers it is right often enough (maj@N well above chance, benchmarks/RESULTS.md) that the
differences between target_only, draft_only, sync and a1 show.

The bundled file files/arith.jsonl is this generator's output, checked in so that nothing is
generated at run time; `python -m a1.data.arith` writes it again (a test checks it is unchanged).
Problems are split into calibration / test like every bundled set (a1.data.datasets).
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

SEED = 20240920
COUNT = 1000
NAMES = ("Tom", "Sara", "Ben", "Mia", "Leo", "Ana", "Sam", "Lily", "Max", "Emma", "Noah", "Zoe")
ITEMS = ("apples", "pencils", "marbles", "books", "cards", "stickers", "cookies", "stamps", "shells", "toys")
CONTAINERS = ("bags", "boxes", "baskets", "jars")


@dataclass(frozen=True)
class ArithProblem:
    id: str
    problem: str
    answer: int
    kind: str
    expression: str  # the computation, e.g. "3 * 4"

    def record(self) -> dict:
        return {"id": self.id, "problem": self.problem, "answer": str(self.answer), "kind": self.kind,
                "expression": self.expression}


def _groups(rng: random.Random) -> tuple[str, int, str]:
    """a containers holding b items each: a * b."""
    name, item, box = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(CONTAINERS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    text = rng.choice((
        f"{name} has {a} {box}. Each of the {box} has {b} {item}. How many {item} does {name} have in total?",
        f"There are {a} {box} with {b} {item} in each one. How many {item} are there in all?",
        f"{name} fills {a} {box} with {b} {item} each. How many {item} does {name} use?",
    ))
    return text, a * b, f"{a} * {b}"


def _more(rng: random.Random) -> tuple[str, int, str]:
    """a items, then b more: a + b."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 9), rng.randint(2, 9)
    text = rng.choice((
        f"{name} has {a} {item}. {name} gets {b} more {item}. How many {item} does {name} have now?",
        f"{name} had {a} {item} and bought {b} more. How many {item} does {name} have now?",
    ))
    return text, a + b, f"{a} + {b}"


# kind -> (maker, weight): the weights give the mix of the file. One-step problems with one-digit
# numbers: a first design with subtraction and two-step problems was too hard for SmolLM2-135M
# (greedy: ~10% right), multiplications and additions in a sentence it gets right often enough.
KINDS: dict[str, tuple[Callable[[random.Random], tuple[str, int, str]], int]] = {
    "groups": (_groups, 3),
    "more": (_more, 2),
}


def generate(count: int = COUNT, seed: int = SEED) -> list[ArithProblem]:
    """`count` problems from random.Random(seed): the same list on every machine and Python 3."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, got {count!r}")
    rng = random.Random(seed)
    kinds = sorted(KINDS)
    weights = [KINDS[k][1] for k in kinds]
    problems: list[ArithProblem] = []
    seen: set[str] = set()
    while len(problems) < count:  # every text once: the calibration and test splits never share one
        kind = rng.choices(kinds, weights)[0]
        text, answer, expression = KINDS[kind][0](rng)
        if text not in seen:
            seen.add(text)
            problems.append(ArithProblem(f"arith-{len(problems):04d}", text, answer, kind, expression))
    return problems


def render(problems: list[ArithProblem]) -> str:
    """The JSONL text of the problems (one object per line, keys in a fixed order)."""
    return "".join(json.dumps(p.record(), ensure_ascii=False) + "\n" for p in problems)


def default_path() -> Path:
    return Path(__file__).resolve().parent / "files" / "arith.jsonl"


def write(path: Optional[Path] = None, count: int = COUNT, seed: int = SEED) -> Path:
    """Write the generated problems to `path` (default: the bundled files/arith.jsonl)."""
    path = Path(path) if path is not None else default_path()
    path.write_text(render(generate(count, seed)), encoding="utf-8")
    return path


if __name__ == "__main__":  # python -m a1.data.arith [PATH]: (re)write the bundled file
    print(write(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
