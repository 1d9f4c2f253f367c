"""A sample's answer: its extraction from the text (extract: the last balanced \\boxed{}), its
grading against the gold one (grading: math-verify with a normalized fallback) and the vote over a
prompt's samples (vote). One module below both the policy and the evaluation, which both use it.

The submodules are imported where used: grading pulls in math-verify and SymPy, which the policy's
answer extraction does not need.
"""
