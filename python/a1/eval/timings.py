"""A run's time over all its invocations: `a1 eval` may be stopped and resumed, maybe on another
machine, so its wall time is the sum of its invocations', each recorded in run.json (start, end,
machine) with its samples carrying its index; speed-ups are only computed between runs that ran
on one and the same machine.

An invocation killed before it recorded its end ends, for this account, at its last sample's
finished_at (the time after it is lost with it); one that recorded no sample and no end adds no
time and is counted as incomplete.
"""
from __future__ import annotations

from typing import Optional


def machine_key(machine: dict) -> tuple:
    """What makes two invocations' timings comparable: the CPU model, the core count, the GPU."""
    machine = machine if isinstance(machine, dict) else {}
    return machine.get("cpu"), machine.get("cores"), machine.get("gpu")


def invocation_timings(invocations: list, records: list[dict]) -> dict:
    """{"invocations": [{index, started, ended, wall_time, barrier_wait, samples, tokens, machine,
    complete}], "wall_time", "samples", "tokens", "tokens_per_second", "barrier_wait", "machines",
    "same_machine", "incomplete"} over every invocation of a run (records: the run's samples)."""
    rows = []
    for entry in invocations:
        if not isinstance(entry, dict) or not isinstance(entry.get("index"), int):
            continue
        mine = [r for r in records if r.get("invocation") == entry["index"]]
        started, ended = entry.get("started"), entry.get("ended")
        last = max((r["finished_at"] for r in mine if isinstance(r.get("finished_at"), (int, float))), default=None)
        end = ended if isinstance(ended, (int, float)) else last
        wall = end - started if isinstance(started, (int, float)) and end is not None else None
        barrier = entry.get("barrier_wait")
        rows.append({"index": entry["index"], "started": started, "ended": ended, "wall_time": wall,
                     "barrier_wait": float(barrier) if isinstance(barrier, (int, float)) else 0.0,
                     "samples": len(mine), "tokens": sum(r["num_tokens"] for r in mine),
                     "machine": entry.get("machine") or {}, "complete": isinstance(ended, (int, float))})
    walls = [row["wall_time"] for row in rows if row["wall_time"] is not None]
    wall = sum(walls) if walls else None
    tokens = sum(row["tokens"] for row in rows)
    machines = sorted({machine_key(row["machine"]) for row in rows}, key=str)
    return {
        "invocations": rows, "wall_time": wall, "samples": sum(row["samples"] for row in rows), "tokens": tokens,
        "tokens_per_second": tokens / wall if wall else None,
        "barrier_wait": sum(row["barrier_wait"] for row in rows),
        "machines": [dict(zip(("cpu", "cores", "gpu"), key)) for key in machines],
        "same_machine": len(machines) <= 1, "incomplete": sum(not row["complete"] for row in rows),
    }


def comparable(a: dict, b: dict) -> Optional[str]:
    """None when two runs' timings (invocation_timings) can be compared: each ran on one machine,
    the same one; else why not."""
    for name, t in (("the run", a), ("the baseline", b)):
        if not t.get("same_machine", False):
            return f"{name} ran on several machines"
    if a.get("machines") != b.get("machines"):
        return "the runs ran on different machines"
    return None
