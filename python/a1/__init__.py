"""a1: asynchronous test-time scaling via conformal prediction (DESIGN.md)."""
