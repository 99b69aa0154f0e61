"""report.md and report.png from the suites' JSON (`python -m bench.report`)."""
