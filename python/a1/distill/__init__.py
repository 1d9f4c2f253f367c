"""`a1 distill-draft`: a shallow draft distilled from its target (DistillSpec; LayerSkip's early-exit
training), on the CPU in a fixed time budget. See docs/drafts.md.

    from a1.distill import DistillConfig, run_distillation
    run_distillation(DistillConfig(target="smollm2-135m", num_layers=4, minutes=30), "drafts/smollm2-135m-4l")
"""
from a1.distill.run import DistillConfig, DistillResult, run_distillation

__all__ = ["DistillConfig", "DistillResult", "run_distillation"]
