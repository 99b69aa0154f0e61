"""`make bench`'s pytest-benchmark suites: inference of every runtime, variant and peer, the training
step, time to accuracy, the targets measured side by side; and `make bench-study`'s longer studies."""
