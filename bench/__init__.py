"""Measurements, in rooms by job: `suites` (`make bench`: training and inference, pytest-benchmark),
`report` (their report.md), `serve` (`make bench-serve`: the server under load beside its peers) and
`gpu` (the GPU check's helpers; bench/gpu_check.sh is its entry point)."""
