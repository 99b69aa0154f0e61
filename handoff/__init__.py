"""The hand-off between stages: the torch-free contract every stage shares, and nothing else.

    pipeline → handoff ← export, deploy, web, bench

Every stage reads and writes files in the artifacts folder (names, and the command that makes
each, in `artifacts`), checked through `manifest.json` (`manifest`, `digest`), written atomically
(`atomic`) under a lock (`lock`); reads the other stages' reports through typed readers
(`reports`) and the rows the gates judged (`held_out`); reads and writes the model contract in the
ONNX metadata (`contract`, with the input formats); runs as a command line of one shape (`cli`,
`errors`); opens ONNX Runtime sessions from tuned option records (`ort_options`); reads the
deployable input files (`idx`, `otto_csv`); describes the CPU (`cpu`); and times rivals in
alternating rounds (`timing`).

Torch-free by rule: these modules import the standard library, numpy and onnxruntime only, never
torch and never another folder of the project (tests/test_imports.py checks every import).
"""
