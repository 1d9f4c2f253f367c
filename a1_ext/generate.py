"""a1_ext.generate: the A1 policy over N samples per prompt (implemented in a1.policy)."""
from __future__ import annotations


def generate(prompts, **kwargs):
    """See a1.policy.generate: `a1_ext.generate(prompts, *, target, draft="self", alpha=0.1, ...)`
    returns one A1Result per prompt (.answer, .samples, .stats)."""
    from a1.policy import generate as policy_generate  # a1 imports a1_ext.ops: import it lazily

    return policy_generate(prompts, **kwargs)
