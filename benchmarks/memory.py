"""Extra peak memory of one call, measured in a fresh Python process: the peak resident set size
(VmHWM) is reset after building the inputs (Linux: write 5 to /proc/self/clear_refs), and the
call's extra memory is the new peak minus the resident size before the call."""
import subprocess
import sys
import textwrap

_CHILD = """
import torch, a1_ext
from a1_ext import ops, reference

def status_kb(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))

torch.manual_seed(0)
{setup}
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status_kb("VmRSS")
{call}
print((status_kb("VmHWM") - before) / 1024)
"""


def peak_extra_mb(setup: str, call: str) -> float:
    """MiB by which the peak resident memory exceeded the resident memory before `call`."""
    code = _CHILD.format(setup=textwrap.dedent(setup), call=textwrap.dedent(call))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(result.stdout.strip().splitlines()[-1])
