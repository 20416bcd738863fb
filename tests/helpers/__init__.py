"""Helpers for the tests and benchmarks, not used in training: `lake` (small synthetic
lakes), `scripted` (a scripted, better-than-random LBF data policy)."""
