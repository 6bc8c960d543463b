"""Benchmarks (`make bench`, `python -m bench.run`): gateway overhead against a bare proxy, and writer throughput."""
