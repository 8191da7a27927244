"""The benchmarks that measure the product: run each as `python -m benchmarks.NAME` from the repository root."""
