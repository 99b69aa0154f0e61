"""A deploy bundle, verified and loaded for inference, torch-free.

A bundle is the folder `make deploy` writes (`python -m deploy.build`): `model.onnx` (fp32, always,
the reference), the default variant's file when that is not fp32 (e.g. `model.int8.onnx`), and
`manifest.json` listing the sha256 and size of every file, the variants it holds, the default one,
and the ONNX Runtime session options `make tune` chose per variant and batch size. `load_bundle`
refuses a bundle whose files do not match that list, then opens the chosen variant on the CPU, one
session per distinct tuned options record, and reads the model's contract (handoff.contract).

Everything under `deploy/` runs without torch; the predictor and the server share this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from deploy.errors import DeployError, ExitCode
from handoff.artifacts import MANIFEST, ONNX, REFERENCE_VARIANT, WEB
from handoff.contract import Contract, ContractError, read_contract
from handoff.errors import PipelineError, first_line
from handoff.manifest import read_manifest, verify
from handoff.ort_options import SessionPool, cpu_session


class Bundle:
    """A verified bundle's chosen variant, with one ONNX Runtime session per distinct options record
    `make tune` chose for it (handoff.ort_options.SessionPool: the batch sizes that share a
    record share a session). ORT's `run` is thread-safe, so callers may share them; the server calls
    them from its one inference thread (deploy.serve.batcher)."""

    def __init__(self, path: Path, variant: str, file: str, contract: Contract, sessions: SessionPool) -> None:
        self.path = path
        self.variant = variant
        self.file = file  # the variant's file name inside the bundle
        self.contract = contract
        self.sessions = sessions

    def options_for(self, batch_size: int) -> dict[str, Any]:
        """The session options record a batch of `batch_size` rows runs with."""
        return self.sessions.options_for(batch_size)

    def session_for(self, batch_size: int) -> ort.InferenceSession:
        return self.sessions.session_for(batch_size)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities for inputs already checked against the contract (the server checks while parsing)."""
        session = self.session_for(len(inputs))
        return session.run([self.contract.output_name], {self.contract.input_name: inputs})[0]

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """float32 N x classes probabilities for checked float32 N x input_shape inputs."""
        try:
            self.contract.check(inputs)
        except ContractError as err:
            raise DeployError.of(err) from err
        return self.run(inputs)

    def summary(self) -> str:
        """One line for logs: model, variant, file and the options per tuned batch size."""
        return (f"{self.contract.model_name} version {self.contract.version}, variant {self.variant} "
                f"({self.path / self.file}); ORT options: {self.sessions.describe()}")


def rebuild_hint(bundle: Path) -> str:
    """What makes a broken bundle whole again (Make takes an existing bundle as up to date)."""
    return f"remove {bundle} and run `make deploy`"


def verify_bundle(path: Path) -> list[str]:
    """Check every file `manifest.json` lists against its sha256; returns their names."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise DeployError(f"{path}: not a deploy bundle (no {MANIFEST}); build one with `make deploy`", ExitCode.BAD_MODEL)
    try:
        names = sorted(read_manifest(path, rebuild_hint(path))["artifacts"])
        if ONNX not in names:
            raise PipelineError(f"{path / MANIFEST}: lists no {ONNX}; {rebuild_hint(path)}")
        verify(path, [name for name in names if not name.startswith(f"{WEB}/")], rebuild_hint(path))
        verify(path, [name for name in names if name.startswith(f"{WEB}/")], f"remove {path / WEB} and run `make web`")
    except PipelineError as err:
        raise DeployError(f"refusing the bundle: {err}", ExitCode.BAD_MODEL) from err
    return names


def load_bundle(path: Path, variant: str | None = None, overrides: dict[str, Any] | None = None) -> Bundle:
    """Verify the bundle at `path` and open `variant` (None: the bundle's default) on the CPU, with
    `overrides` (e.g. the server's {"allow_spinning": False}) on top of every tuned options record."""
    path = Path(path)
    names = verify_bundle(path)
    manifest = read_manifest(path)
    # A bundle built before variants existed holds model.onnx only, untuned.
    variants = manifest.get("variants") or {REFERENCE_VARIANT: {"file": ONNX}}
    variant = variant or manifest.get("default_variant", REFERENCE_VARIANT)
    if variant not in variants or variants[variant]["file"] not in names:
        held = sorted(variants, key=lambda name: (name != REFERENCE_VARIANT, name))
        raise DeployError(f"{path}: no variant {variant!r} in this bundle; it has {', '.join(held)} "
                          f"(`make deploy VARIANT=...` chooses which one it carries)", ExitCode.BAD_MODEL)
    file = variants[variant]["file"]
    tuned = {size: {"options": {**record, **(overrides or {})}}
             for size, record in manifest.get("ort_options", {}).get(variant, {}).items()}
    if not tuned and overrides:
        tuned = {"1": {"options": dict(overrides)}}  # one record for every batch size
    sessions = SessionPool(path / file, tuned, _open)
    try:
        contract = read_contract(sessions.open_all(), path / file)  # every session opened before serving
    except ContractError as err:
        raise DeployError.of(err) from err
    return Bundle(path, variant, file, contract, sessions)


def _open(model: Path, record: dict[str, Any]) -> ort.InferenceSession:
    try:
        return cpu_session(model, record)
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/...; any of them means no model
        raise DeployError(f"{model}: ONNX Runtime cannot load it ({first_line(err)})", ExitCode.BAD_MODEL) from err
