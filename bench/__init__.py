"""Benchmarks: each script measures variants side by side in one run and prints ratios."""
