"""Triton's model repository extension on a live server (`mlp-serve --repository DIR`): index, load
and unload, with hot reload that loses no request; torch-free. The folder layout and the version
policy are deploy.model_repository's.

    repository = Repository(Path("models"), models, open_version)
    await repository.load("mnist_mlp")     # (re-)read the folder, serve the versions its policy picks
    await repository.unload("mnist_mlp")   # serve none; what is queued is still answered
    repository.index(ready_only=False)     # Triton's index entries

A load is all or nothing: every version it adds is opened and verified (the manifest's sha256s and
the contract, by load_bundle), then answers a warm-up call, off the event loop, while the versions
already loaded keep serving. Only then does one swap on the event loop move traffic
(deploy.serve.models); the versions it retires answer what they had queued, then stop. A version
that fails anything is refused with the reason (400), the model keeps what it served, and the
index says UNAVAILABLE with that reason. A version already loaded whose manifest did not change is
kept as it is, with its statistics.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from deploy.errors import DeployError, ExitCode
from deploy.model_repository import fingerprint, model_names, pick_versions, version_folders, version_policy
from deploy.serve.models import ServedModels
from deploy.serve.protocol import ProtocolError
from deploy.serve.service import ModelService
from handoff.errors import PipelineError

log = logging.getLogger("mlp-serve")
OpenVersion = Callable[[Path, str, str], ModelService]  # (bundle folder, name, version) -> a service, not started


class Repository:
    def __init__(self, root: Path, models: ServedModels, open_version: OpenVersion) -> None:
        self.root, self.models, self._open = Path(root), models, open_version
        self._fingerprints: dict[tuple[str, str], str] = {}  # (name, version) loaded -> its manifest's sha256
        self._failures: dict[tuple[str, str], str] = {}  # (name, version) -> why its last load failed
        self._locks: dict[str, asyncio.Lock] = {}

    def index(self, ready_only: bool = False) -> list[dict]:
        """Every model of the folder: its loaded versions (READY), the others UNAVAILABLE with the reason."""
        entries, served = [], self.models.index()
        for name in sorted({*model_names(self.root), *self.models.names()}):
            loaded = {entry["version"]: entry for entry in served if entry["name"] == name}
            for version in version_folders(self.root / name) | dict.fromkeys(loaded):
                entry = loaded.get(version) or {"name": name, "version": version, "state": "UNAVAILABLE",
                                                "reason": self._failures.get((name, version), "unloaded")}
                if entry["state"] == "READY" or not ready_only:
                    entries.append(entry)
        return entries

    async def load_all(self) -> None:
        """Start-up: every model of the folder (Triton's --model-control-mode=explicit --load-model=*)."""
        names = model_names(self.root)
        if not names:
            raise DeployError(f"{self.root}: no model folders (<repository>/<model>/<version>/, `make deploy REPOSITORY=...`)", ExitCode.BAD_MODEL)
        for name in names:
            await self.load(name)

    async def load(self, name: str) -> None:
        """Serve the versions `name`'s policy picks now; ProtocolError(400) leaves it as it was."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            folders = self._pick(name)
            loaded = {version: self.models.resolve(name, version) for version in self.models.versions(name)}
            prints = {version: fingerprint(folder) for version, folder in folders.items()}
            kept = {v: loaded[v] for v in folders if v in loaded and self._fingerprints.get((name, v)) == prints[v]}
            fresh = {v: folder for v, folder in folders.items() if v not in kept}
            opened = await asyncio.to_thread(self._open_verified, name, fresh)
            retired = self.models.swap(name, {**kept, **opened})
            for version in loaded.keys() - folders.keys():
                self._fingerprints.pop((name, version), None)
            self._fingerprints.update({(name, v): prints[v] for v in opened})
            log.info("%s: serving version%s %s%s", name, "s" * (len(folders) > 1), ", ".join(folders),
                     f"; retiring {', '.join(s.version for s in retired)}" if retired else "")
            await asyncio.to_thread(_stop_all, retired)

    async def unload(self, name: str) -> None:
        async with self._locks.setdefault(name, asyncio.Lock()):
            if name not in self.models.names() and not (self.root / name).is_dir():
                raise ProtocolError(400, f"failed to unload {name!r}: no such model in {self.root}")
            retired = self.models.swap(name, {})
            for service in retired:
                self._fingerprints.pop((name, service.version), None)
            log.info("%s: unloaded%s", name, f" version {', '.join(s.version for s in retired)}" if retired else " (was not loaded)")
            await asyncio.to_thread(_stop_all, retired)

    def _pick(self, name: str) -> dict[str, Path]:
        model = self.root / name
        if "/" in name or name.startswith(".") or not model.is_dir():
            raise ProtocolError(400, f"failed to load {name!r}: no model folder {model}")
        try:
            folders = version_folders(model)
            picked = pick_versions(version_policy(model), list(folders))
        except DeployError as err:
            raise ProtocolError(400, f"failed to load {name!r}: {err}") from err
        if not picked:
            raise ProtocolError(400, f"failed to load {name!r}: its version policy picks none of the versions in {model} "
                                     f"({', '.join(folders) or 'none'})")
        return {version: folders[version] for version in picked}

    def _open_verified(self, name: str, folders: dict[str, Path]) -> dict[str, ModelService]:
        """Open, verify, warm up and start each version (in a worker thread); all of them or none."""
        opened: dict[str, ModelService] = {}
        try:
            for version, folder in folders.items():
                try:
                    service = self._open(folder, name, version)
                    warm_up(service)
                except (PipelineError, ProtocolError, OSError) as err:  # a broken bundle, in any way
                    self._failures[(name, version)] = str(err)
                    raise ProtocolError(400, f"failed to load {name!r} version {version}: {err}") from err
                service.start()
                opened[version] = service
                self._failures.pop((name, version), None)
        except BaseException:
            _stop_all(list(opened.values()))
            raise
        return opened


def warm_up(service: ModelService) -> None:
    """One call on a row of zeros before the version takes traffic: ORT's first run allocates and
    picks kernels, and a model that cannot answer is refused here, not by a client's request."""
    contract = service.contract
    probs = service.bundle.run(np.zeros((1, *contract.input_shape), np.float32))
    if probs.shape != (1, len(contract.classes)) or not np.isfinite(probs).all() or abs(float(probs.sum()) - 1) > 1e-3:
        raise DeployError(f"{service.bundle.path}: the warm-up call answered {probs.shape} {probs.ravel()[:4]}..., "
                          f"not {len(contract.classes)} probabilities summing to 1", ExitCode.BAD_MODEL)


def _stop_all(services: list[ModelService]) -> None:
    for service in services:
        service.stop()
