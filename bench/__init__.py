"""Benchmarks of ssgan's kernels (CUDA only): ``python -m bench.<name> --json OUT.json``."""
