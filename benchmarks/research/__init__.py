"""The research scripts behind docs/results.md: run each as `python -m benchmarks.research.NAME`."""
