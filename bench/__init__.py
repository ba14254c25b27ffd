"""Load benchmarks for the service: ``.venv/bin/python -m bench.run --help`` (and bench.soak, bench.request_cost)."""
