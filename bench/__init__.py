"""Benchmarks: ``python -m bench`` prints markdown tables and writes plots to bench/results/."""
