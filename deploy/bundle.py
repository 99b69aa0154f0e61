"""A deploy bundle, verified and loaded for inference, torch-free.

A bundle is the folder `make deploy` writes (`python -m deploy.build`): `model.onnx` (fp32, always,
the reference), the default variant's file when that is not fp32 (e.g. `model.int8.onnx`), and
`manifest.json` listing the sha256 and size of every file, the variants it holds, the default one,
and the ONNX Runtime session options `make tune` chose per variant and batch size. `load_bundle`
refuses a bundle whose files do not match that list, then opens the chosen variant on the CPU, one
session per distinct tuned options record, and reads the model's contract (deploy.contract).

Everything under `deploy/` runs without torch; the predictor and the server share this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from deploy.contract import Contract, DeployError, ExitCode, read_contract
from pipeline.errors import PipelineError, first_line
from pipeline.manifest import MANIFEST, read_manifest, verify
from pipeline.ort_options import describe, options_for_batch, session_options

MODEL_FILE = "model.onnx"  # the fp32 reference, in every bundle
REFERENCE = "fp32"


def _key(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True)


class Bundle:
    """A verified bundle's chosen variant, with one ONNX Runtime session per distinct options record
    `make tune` chose for it (the batch sizes that share a record share a session). Sessions are
    shared by every caller: ORT's `run` is thread-safe, so the server's worker threads use them
    concurrently."""

    def __init__(self, path: Path, variant: str, file: str, contract: Contract,
                 tuned: dict[str, dict[str, Any]], sessions: dict[str, ort.InferenceSession]) -> None:
        self.path = path
        self.variant = variant
        self.file = file  # the variant's file name inside the bundle
        self.contract = contract
        self.tuned = tuned  # batch size (str) -> {"options": record}: what options_for_batch takes; {}: untuned
        self._sessions = sessions  # _key(record) -> session
        # batch size -> session, filled on first use; the server bounds batch sizes by --max-batch
        self._by_batch: dict[int, ort.InferenceSession] = {}

    def options_for(self, batch_size: int) -> dict[str, Any]:
        """The session options record a batch of `batch_size` rows runs with."""
        return options_for_batch(self.tuned, batch_size)

    def session_for(self, batch_size: int) -> ort.InferenceSession:
        session = self._by_batch.get(batch_size)
        if session is None:
            session = self._by_batch[batch_size] = self._sessions[_key(self.options_for(batch_size))]
        return session

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities for inputs already checked against the contract (the server checks while parsing)."""
        session = self.session_for(len(inputs))
        return session.run([self.contract.output_name], {self.contract.input_name: inputs})[0]

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """float32 N x classes probabilities for checked float32 N x input_shape inputs."""
        self.contract.check(inputs)
        return self.run(inputs)

    def options_text(self) -> str:
        """The options in use, for logs: per tuned batch size, or ORT's defaults when untuned."""
        if not self.tuned:
            return "ORT defaults (not tuned for this variant)"
        sizes = sorted(self.tuned, key=int)
        return "; ".join(f"batch {size}: {describe(self.options_for(int(size)))}" for size in sizes) \
            + " (a batch uses the nearest tuned size)"

    def summary(self) -> str:
        """One line for logs: model, variant, file and the options per tuned batch size."""
        return (f"{self.contract.model_name} version {self.contract.version}, variant {self.variant} "
                f"({self.path / self.file}); ORT options: {self.options_text()}")


def verify_bundle(path: Path) -> list[str]:
    """Check every file `manifest.json` lists against its sha256; returns their names."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise DeployError(f"{path}: not a deploy bundle (no {MANIFEST}); build one with `make deploy`", ExitCode.BAD_MODEL)
    try:
        names = sorted(read_manifest(path)["artifacts"])
        if MODEL_FILE not in names:
            raise PipelineError(f"{path / MANIFEST}: lists no {MODEL_FILE}")
        verify(path, names)
    except PipelineError as err:
        raise DeployError(f"refusing the bundle: {err}", ExitCode.BAD_MODEL) from err
    return names


def load_bundle(path: Path, variant: str | None = None) -> Bundle:
    """Verify the bundle at `path` and open `variant` (None: the bundle's default) on the CPU."""
    path = Path(path)
    names = verify_bundle(path)
    manifest = read_manifest(path)
    # A bundle built before variants existed holds model.onnx only, untuned.
    variants = manifest.get("variants") or {REFERENCE: {"file": MODEL_FILE}}
    variant = variant or manifest.get("default_variant", REFERENCE)
    if variant not in variants or variants[variant]["file"] not in names:
        held = sorted(variants, key=lambda name: (name != REFERENCE, name))
        raise DeployError(f"{path}: no variant {variant!r} in this bundle; it has {', '.join(held)} "
                          f"(`make deploy VARIANT=...` chooses which one it carries)", ExitCode.BAD_MODEL)
    file = variants[variant]["file"]
    tuned = {size: {"options": record} for size, record in manifest.get("ort_options", {}).get(variant, {}).items()}
    records = [options_for_batch(tuned, int(size)) for size in tuned] or [options_for_batch({}, 1)]
    sessions = {_key(record): _open(path / file, record) for record in records}
    contract = read_contract(next(iter(sessions.values())), path / file)
    return Bundle(path, variant, file, contract, tuned, sessions)


def _open(model: Path, record: dict[str, Any]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(model), sess_options=session_options(record), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/...; any of them means no model
        raise DeployError(f"{model}: ONNX Runtime cannot load it ({first_line(err)})", ExitCode.BAD_MODEL) from err
