"""The GPU check's helpers (bench/gpu_check.sh runs them on a lent GPU machine): the preflight and the summary."""
