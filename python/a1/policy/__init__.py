"""The A1 policy: a draft model writes reasoning steps, the target scores each one, and a conformal
p-value decides per sample (accept, resample, or target takeover) with no barrier between samples.

    results = a1.policy.generate(["What is 7*8?"], target="smollm2-135m", num_samples=4)
    results[0].answer, results[0].stats["takeover_rate"]

The step loop of one sample is sample_loop.SampleRun.run; the driver runs all of them on the
engine's one stepping loop; config.PolicyConfig holds the settings.
"""
from .config import MODES, SCORE_KINDS, PolicyConfig
from .decide import decide
from .generate import calibration_metadata, generate
from .results import A1Result, SampleResult, StepRecord

__all__ = [
    "A1Result", "MODES", "PolicyConfig", "SCORE_KINDS", "SampleResult", "StepRecord", "calibration_metadata", "decide",
    "generate",
]
