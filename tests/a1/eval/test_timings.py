"""A resumed run's time is the sum of its invocations' (each recorded in run.json, its samples
carrying its index), a run spread over machines is flagged, and speed-ups are only computed
between runs of one and the same machine."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from a1.eval.results import RunStore, load_run
from a1.eval.runner import EvalSettings, run_eval
from a1.eval.tables import speedup_table
from a1.eval.timings import comparable, invocation_timings
from tiny_cli import tiny_llm

MACHINE = {"cpu": "Xeon", "cores": 2}


def record(q: str, i: int, invocation: int, finished: float, tokens: int = 10) -> dict:
    return {"question_id": q, "sample_index": i, "invocation": invocation, "finished_at": finished,
            "num_tokens": tokens}


def test_invocations_add_up_and_a_killed_one_ends_at_its_last_sample():
    invocations = [{"index": 0, "started": 100.0, "ended": 110.0, "machine": MACHINE, "barrier_wait": 1.0},
                   {"index": 1, "started": 200.0, "ended": None, "machine": MACHINE},  # killed
                   {"index": 2, "started": 300.0, "ended": None, "machine": MACHINE}]  # killed before a sample
    records = [record("a", 0, 0, 105.0), record("a", 1, 1, 203.0), record("b", 0, 1, 207.0, tokens=30)]
    t = invocation_timings(invocations, records)
    assert t["wall_time"] == pytest.approx(10.0 + 7.0) and t["samples"] == 3 and t["tokens"] == 50
    assert t["tokens_per_second"] == pytest.approx(50 / 17) and t["barrier_wait"] == 1.0
    assert t["incomplete"] == 2 and t["same_machine"]
    other = [dict(invocations[0]), dict(invocations[1], machine={"cpu": "EPYC", "cores": 2})]
    mixed = invocation_timings(other, records)
    assert not mixed["same_machine"] and len(mixed["machines"]) == 2
    assert comparable(t, t) is None and "several machines" in comparable(mixed, t)
    elsewhere = invocation_timings([dict(invocations[0], machine={"cpu": "EPYC", "cores": 2})], records)
    assert "different machines" in comparable(elsewhere, t)


def test_a_resumed_run_sums_its_invocations(tmp_path: Path, monkeypatch):
    data = tmp_path / "q.jsonl"
    data.write_text("".join(json.dumps({"id": q, "problem": f"What is {q}+1?", "answer": "2"}) + "\n" for q in "abc"))
    settings = EvalSettings.build(data=str(data), out=str(tmp_path / "run"), num_samples=2, max_tokens=24,
                                  step_tokens=6, max_turns=3, progress=False)
    llm = tiny_llm(self_mode=True)
    append, count = RunStore.append, []

    def stop_after_two(self, rec):
        append(self, rec)
        count.append(1)
        if len(count) == 2:
            raise KeyboardInterrupt  # the user stops the first invocation

    monkeypatch.setattr(RunStore, "append", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        run_eval(settings, llm=llm, log=lambda line: None)
    monkeypatch.undo()
    summary = run_eval(settings, llm=llm, log=lambda line: None)
    run = load_run(tmp_path / "run")
    assert [inv["index"] for inv in run.invocations] == [0, 1]
    assert all(inv["ended"] >= inv["started"] for inv in run.invocations)
    assert sorted({r["invocation"] for r in run.records}) == [0, 1] and len(run.records) == 6
    walls = [inv["ended"] - inv["started"] for inv in run.invocations]
    assert summary["wall_time"] == pytest.approx(sum(walls)) and summary["timings"]["samples"] == 6
    assert summary["summary"]["tokens_per_second"] == pytest.approx(
        sum(r["num_tokens"] for r in run.records) / sum(walls))
    assert summary["timings"]["same_machine"]


def test_speedups_only_between_runs_of_one_machine(tmp_path: Path):
    def make(name: str, method: str, cpu: str, wall: float) -> Path:
        settings = {"method": method, "dataset": "d", "num_samples": 1, "alpha": 0.1, "calibration": "online"}
        rec = {"question_id": "q", "sample_index": 0, "dataset": "d", "gold": "1", "answer": "1", "correct": True,
               "finish_reason": "answer", "num_tokens": 5, "draft_tokens": 3, "target_tokens": 2,
               "score_tokens": 0, "latency": 1.0, "steps": [], "text": "", "invocation": 0, "finished_at": 5.0}
        with RunStore.open(tmp_path / name, settings) as store:
            store.start_invocation({"cpu": cpu, "cores": 2}, {})
            store.append(rec)
            store.end_invocation()
            timings = invocation_timings(store.invocations(), [rec])
            store.write_summary({"summary": {"target_tokens": 2}, "wall_time": wall, "timings": timings})
        return tmp_path / name

    base = load_run(make("base", "target_only", "Xeon", 10.0))
    same = load_run(make("same", "a1", "Xeon", 5.0))
    other = load_run(make("other", "a1", "EPYC", 5.0))
    table = speedup_table([base, same, other])
    same_row = next(line for line in table.splitlines() if line.startswith("| same"))
    other_row = next(line for line in table.splitlines() if line.startswith("| other"))
    assert "not comparable" not in same_row and "not comparable: the runs ran on different machines" in other_row
