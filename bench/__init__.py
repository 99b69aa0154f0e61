"""pytest-benchmark suites and their report (`python -m bench.report`)."""
