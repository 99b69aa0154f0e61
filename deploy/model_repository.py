"""A model repository: deploy bundles laid out as Triton lays out its models, torch-free.

    <repository>/<model>/config.pbtxt        optional: Triton's ModelConfig text; its version_policy is read
    <repository>/<model>/<version>/          one deploy bundle (manifest.json, model.onnx, ...), version an integer

The folder names give the model's name and version. Which versions are served follows Triton's
version policy (`latest { num_versions: 1 }` when the config gives none, `all {}`, `specific {
versions: [...] }`), parsed with the ModelConfig schema tritonclient ships, as Triton parses it.
`publish` (what `make deploy REPOSITORY=...` runs) copies a bundle in as the next version, atomically:
a server that re-reads the folder never sees half a version. The server's side (loading, swapping)
is deploy.serve.repository.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from deploy.bundle import verify_bundle
from deploy.errors import DeployError, ExitCode
from handoff.artifacts import MANIFEST

CONFIG = "config.pbtxt"


def model_names(root: Path) -> list[str]:
    """The model folders of the repository (hidden ones, such as a publish in progress, are not models)."""
    if not Path(root).is_dir():
        raise DeployError(f"{root}: no such model repository folder", ExitCode.BAD_MODEL)
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith("."))


def version_folders(model: Path) -> dict[str, Path]:
    """version -> folder, for every integer-named folder of a model, in version order."""
    folders = [p for p in Path(model).iterdir() if p.is_dir() and p.name.isdigit()] if Path(model).is_dir() else []
    return {p.name: p for p in sorted(folders, key=lambda p: int(p.name))}


def version_policy(model: Path) -> model_config_pb2.ModelVersionPolicy:
    """The model's version policy from its config.pbtxt; Triton's default (the latest one) without it."""
    policy = model_config_pb2.ModelVersionPolicy(latest=model_config_pb2.ModelVersionPolicy.Latest(num_versions=1))
    config = Path(model) / CONFIG
    if config.is_file():
        try:
            parsed = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())
        except text_format.ParseError as err:
            raise DeployError(f"{config}: not a Triton model configuration ({err})", ExitCode.BAD_MODEL) from err
        if parsed.HasField("version_policy"):
            policy = parsed.version_policy
    return policy


def pick_versions(policy: model_config_pb2.ModelVersionPolicy, available: list[str]) -> list[str]:
    """The versions `policy` serves out of `available` (integer names, in version order)."""
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return list(available)
    if kind == "specific":
        wanted = {str(v) for v in policy.specific.versions}
        return [v for v in available if v in wanted]
    return available[-max(policy.latest.num_versions, 1):] if available else []


def fingerprint(version: Path) -> str:
    """What identifies a version's content: its manifest's sha256 (the manifest lists every file's);
    "" without one (loading it then says why)."""
    manifest = Path(version) / MANIFEST
    return hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else ""


def publish(bundle: Path, root: Path, name: str, again: bool = False) -> tuple[str, bool]:
    """Copy `bundle` into `root`/`name` as the next version; (version, True), or (the version, False)
    when the latest version already is this bundle (unless `again`: a hot-reload bench re-publishes
    one bundle). The copy is verified, then renamed into place."""
    verify_bundle(bundle)
    model = Path(root) / name
    model.mkdir(parents=True, exist_ok=True)
    versions = version_folders(model)
    if versions and not again:
        latest = list(versions)[-1]
        if (versions[latest] / MANIFEST).is_file() and filecmp.cmp(versions[latest] / MANIFEST, Path(bundle) / MANIFEST, shallow=False):
            return latest, False
    version = str(int(list(versions)[-1]) + 1 if versions else 1)
    staging = Path(tempfile.mkdtemp(prefix=".publish-", dir=model))
    try:
        shutil.copytree(bundle, staging, dirs_exist_ok=True)
        verify_bundle(staging)
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the version from a server run as another user
        os.rename(staging, model / version)  # atomic on one filesystem; fails if the version appeared meanwhile
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version, True
