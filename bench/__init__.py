"""Benchmarks: measured numbers for the targets in the issues (run from the repo root)."""
