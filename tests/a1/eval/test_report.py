"""report.md, its tables, PNGs and the roofline estimate over small hand-built run directories."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from a1.eval.metrics import summarize
from a1.eval.report import comparison_table, speedup_table, write_report
from a1.eval.results import RunStore, load_run
from a1.eval.roofline import Roofline, arithmetic_intensity, measure_roofline
from test_results import make_record

MODELS = {"target": {"name": "T-7B", "params": 7_000_000_000, "bytes": 14_000_000_000},
          "draft": {"name": "D-0.5B", "params": 500_000_000, "bytes": 1_000_000_000}}
ROOF = Roofline(peak_flops=1e12, bandwidth=1e11)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def settings(**over) -> dict:
    base = {"method": "a1", "dataset": "math500", "alpha": 0.1, "num_samples": 2, "max_turns": 8,
            "calibration": "online", "max_num_seqs": 10, "seed": 0}
    return {**base, **over}


def step(decision: str, turn: int) -> dict:
    tested = decision != "forced"
    return {"turn": turn, "attempt": 0, "stratum": str(min(turn, 1)), "score": 1.0 if tested else None,
            "p_value": 0.5 if tested else None, "decision": decision, "num_tokens": 10, "by": "draft"}


def make_run(root: Path, name: str, cfg: dict, *, decisions=(), target_tokens=100, wall=None,
             barrier=0.0, phase_tokens=None, extra=None, questions=3) -> Path:
    """questions x cfg['num_samples'] records; `decisions` are dealt round-robin to the records' steps."""
    n = cfg["num_samples"]
    records = [make_record(f"q{q}", i, target_tokens=target_tokens, steps=[],
                           correct=(q != 2), answer="4" if q != 2 else "5")
               for q in range(questions) for i in range(n)]
    for j, d in enumerate(decisions):
        rec = records[j % len(records)]
        rec["steps"].append(step(d, len(rec["steps"])))
    with RunStore.open(root / name, cfg, models=MODELS, machine={"cpu": "test", "cores": 2}) as store:
        for r in records:
            store.append(r)
        if wall is not None:
            summary = {"summary": summarize(records, alpha=cfg["alpha"], wall_time=wall),
                       "wall_time": wall, "barrier_wait": barrier,
                       "phase_tokens": phase_tokens or {}, "engine": {}, **(extra or {})}
            store.write_summary(summary)
    return root / name


# 20 tested steps: 2 takeovers + 3 resamples = 25% rejected, takeover rate 10%
A1_DECISIONS = ["takeover"] * 2 + ["resample"] * 3 + ["accept"] * 15 + ["forced"] * 2


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    return [
        make_run(tmp_path, "target2", settings(method="target_only"), target_tokens=100, wall=100.0),
        make_run(tmp_path, "a1_2", settings(), decisions=A1_DECISIONS, target_tokens=25, wall=40.0,
                 phase_tokens={"draft_decode": 600, "target_score": 1000, "target_decode": 150},
                 extra={"calibration": {"scores": 50}}),
        make_run(tmp_path, "a1_cond", settings(calibration="per-question"), decisions=["accept"] * 6,
                 target_tokens=50, wall=50.0),
        make_run(tmp_path, "sync_gsm", settings(method="sync", dataset="gsm8k"), target_tokens=10,
                 wall=30.0, barrier=12.0),
    ]


def _row(md: str, name: str) -> str:
    rows = [line for line in md.splitlines() if line.startswith(f"| {name} |")]
    assert rows, f"no row for {name}"
    return rows[0]


def test_comparison_table_shows_planted_counts(runs: list[Path]) -> None:
    table = comparison_table([load_run(d) for d in runs])
    row = _row(table, "a1_2")
    assert "| 10.0% |" in row  # takeover rate 2/20
    assert "| 25.0% [" in row  # rejection 5/20 with its interval
    assert "| 66.7% | 66.7% | 66.7% |" in row  # mean acc, pass@N, maj@N: q2 always wrong
    assert "| 150 |" in row and "| 40.0 |" in row
    assert "| — |" in _row(table, "target2")  # no tested steps: no rejection rate


def test_speedup_table_ratios_and_missing_baseline(runs: list[Path]) -> None:
    table = speedup_table([load_run(d) for d in runs])
    a1 = _row(table, "a1_2")
    assert "| 2.50× |" in a1 and "| 4.00× |" in a1  # 100 s / 40 s; 600 / 150 target tokens
    cond = _row(table, "a1_cond")
    assert "| 2.00× |" in cond and "| 2.00× |" in cond
    marginal, conditional = table.index("marginal calibration"), table.index("conditional calibration")
    assert marginal < table.index("| a1_2 |") < conditional < table.index("| a1_cond |")
    assert "no target_only run" in _row(table, "sync_gsm")
    assert "| target2 |" not in table  # the baseline is the header line, not a row
    without = speedup_table([load_run(runs[1])])
    assert "no target_only run" in without and "×" not in without


def test_roofline_estimate_from_planted_counts(runs: list[Path]) -> None:
    est = arithmetic_intensity(load_run(runs[1]), ROOF)
    # 600 tokens, batch min(max_num_seqs 10, 6 samples) -> 100 forwards of 1 GB; 2*0.5e9*600 FLOPs
    draft = est["draft_decode"]
    assert draft["forwards"] == 100 and draft["bytes"] == 1e11 and draft["flops"] == 6e11
    assert math.isclose(draft["t_compute"], 0.6) and math.isclose(draft["t_memory"], 1.0)
    assert math.isclose(draft["ratio"], 0.6) and draft["bound"] == "memory"
    score = est["target_score"]  # 1000 tokens in one 2048-token step
    assert score["forwards"] == 1 and math.isclose(score["ratio"], 14.0 / 0.14)  # 1.4e13 FLOP / 14 GB
    sync = arithmetic_intensity(load_run(runs[3]), ROOF)
    assert math.isclose(sync["total"]["t_sync"], 2.0)  # 12 sample-seconds / batch 6
    assert est["total"]["t_sync"] == 0.0


def test_write_report(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    path = write_report(runs, out, roofline=ROOF)
    md = path.read_text()
    assert path == out / "report.md"
    assert "| 10.0% |" in _row(md, "a1_2") and "no target_only run" in md
    images = [line.split("(")[1].rstrip(")") for line in md.splitlines() if line.startswith("![")]
    assert set(images) == {"rejection_vs_alpha.png", "rejection_by_stratum.png", "accuracy_vs_cost.png"}
    for name in images:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and data.endswith(b"IEND\xaeB`\x82") and len(data) > 10_000
    assert "Not drawn: no finished runs that differ only in N (samples)" in md
    assert not (out / "sweep_samples.png").exists()
    assert "| a1_2 | draft_decode | 600 | 100 | 6e+11 | 1e+11 | 6.0 | 0.6 | 1 | 0 | 0.60 | memory |" in md and "Assumptions:" in md
    assert "conformal band not drawn for a1_cond" in md  # a1_2 planted its calibration size
    section = md.split("## Rejection per stratum")[1].split("## Speed-up")[0]
    assert "### a1_2" in section and "question-clustered 95%" in section and "warm-up share" in section
    row = _row(section.split("### a1_2")[1].split("###")[0], "**all**")  # 5 of 20 rejected over its 3 questions
    assert "| 20 |" in row and "| 25.0% |" in row and "(< 2 questions)" not in row


def test_sweep_plots_when_n_and_turns_vary(tmp_path: Path) -> None:
    dirs = [make_run(tmp_path, f"n{n}", settings(num_samples=n), decisions=["accept"] * 4,
                     wall=10.0 * n, questions=1) for n in (1, 2, 4)]
    dirs += [make_run(tmp_path, f"t{t}", settings(max_turns=t), wall=5.0 + t, questions=1) for t in (4, 16)]
    out = tmp_path / "report"
    md = write_report(dirs, out, roofline=ROOF).read_text()
    for name in ("sweep_samples.png", "sweep_turns.png"):
        assert f"]({name})" in md
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert "Not drawn" not in md


def test_unfinished_run_and_bad_input(tmp_path: Path) -> None:
    d = make_run(tmp_path, "partial", settings(), decisions=["resample", "accept"])  # no summary
    md = write_report([d], tmp_path / "r", roofline=ROOF).read_text()
    assert "unfinished (6 samples)" in md and "**unfinished**" in md
    assert "| 50.0% [" in _row(md, "partial")  # metrics computed from the records
    with pytest.raises(ValueError, match="run_dirs is empty"):
        write_report([], tmp_path / "r")
    with pytest.raises(ValueError, match="no run.json"):
        write_report([tmp_path], tmp_path / "r")


def test_measure_roofline_is_plausible() -> None:
    roof = measure_roofline(seconds=0.2)
    assert 1e8 < roof.peak_flops < 1e16 and 1e8 < roof.bandwidth < 1e14
    assert roof.balance == roof.peak_flops / roof.bandwidth
