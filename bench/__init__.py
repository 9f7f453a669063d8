"""siprouter's benchmark suite against Kamailio (see docs/benchmarks.md).

``python -m bench`` (or ``bench/run``) from the repository root.
"""
