"""Load benchmarks for the service: ``.venv/bin/python bench/run.py --help``."""
