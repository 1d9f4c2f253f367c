"""Peak CPU memory allocated by torch inside a call, from the profiler's allocation events."""
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def peak_allocated_bytes(fn: Callable[[], object]) -> int:
    """Largest running total of bytes allocated (minus freed) by torch's CPU allocator during fn()."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.events() if e.name == "[memory]"), key=lambda e: e.time_range.start)
    running = peak = 0
    for event in events:
        running += event.cpu_memory_usage
        peak = max(peak, running)
    return peak
