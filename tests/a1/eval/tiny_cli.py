"""`a1 ...` on a tiny random target/draft pair (tests/a1/policy/tiny_pair.py), for tests that run
the CLI in a subprocess: python tests/a1/eval/tiny_cli.py eval --data q.jsonl --out DIR ...

A1_TEST_APPEND_DELAY=seconds sleeps after each recorded sample, so that a test can kill the run
between two samples; the run itself is unchanged.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "policy"))

from tiny_pair import CharTokenizer, tiny_loaded  # noqa: E402

TARGET, DRAFT = "tiny-target", "tiny-draft"
# Two questions as `a1 eval --data` reads them: what the CLI tests run on.
TWO_QUESTIONS = ('{"id": "a", "problem": "What is 1+1?", "answer": "2"}\n'
                 '{"id": "b", "problem": "What is 2+2?", "answer": "4"}\n')


def tiny_llm(self_mode: bool = False):
    """The tiny target with its tiny draft, or alone (self mode: the target drafts too)."""
    import a1

    tokenizer = CharTokenizer()
    draft = None if self_mode else tiny_loaded(2, tokenizer, DRAFT)
    return a1.LLM(tiny_loaded(1, tokenizer, TARGET), draft=draft, kv_cache_gb=0.05)


def main(argv: list[str]) -> int:
    delay = float(os.environ.get("A1_TEST_APPEND_DELAY", "0"))
    if delay > 0:
        from a1.eval.results import RunStore

        append = RunStore.append

        def slow_append(self, record):
            append(self, record)
            time.sleep(delay)

        RunStore.append = slow_append
    from a1.cli import main as cli_main

    return cli_main(argv, llm=tiny_llm())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
