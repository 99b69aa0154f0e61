"""The hand-off between stages: what train, export, bench and deploy share, and nothing else.

Every stage reads and writes files in the artifacts folder (names in `artifacts`), checked through
`manifest.json` (`manifest`, `digest`), written atomically (`atomic`) under a lock (`lock`); reads
the other stages' reports through typed readers (`reports`); runs as a command line of one shape
(`cli`, `errors`); opens ONNX Runtime sessions from tuned option records (`ort_options`); reads
the deployable input formats (`idx`, `otto_csv`); describes the CPU (`cpu`); times rivals in
alternating rounds (`timing`); and knows which source files each stage is built from (`sources`,
which the Makefile runs).

Torch-free by rule: these modules import the standard library, numpy and onnxruntime only, never
torch and never the training code (tests/test_imports.py checks every import). `deploy/` imports
nothing from `pipeline` but this package.
"""
