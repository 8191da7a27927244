"""Presentation: how results are kept and shown — table schemas, the DuckDB views with the verdict
computed from them, and the HTML report."""
