"""The model versions a server has loaded, by name: what the protocols route each request to, and
what its metadata, readiness and statistics answers list; torch-free.

    models = ServedModels()
    models.swap("mnist_mlp", {"1": service})      # -> the services it retired (stop them: they drain)
    service = models.resolve("mnist_mlp", None)   # None or "": the highest loaded version, as Triton
    probs = await service.infer(inputs)

Only the event loop's thread calls these, so a swap is atomic for every request: a request resolves
its service and queues its rows in one step, with no await between (deploy.serve.service.infer), so
a version taken out of the map never receives a new request, and one it already queued is answered
before its batcher stops.
"""

from __future__ import annotations

from collections.abc import Iterator

from deploy.serve.protocol import ProtocolError
from deploy.serve.service import ModelService

SERVER_NAME = "mlp-serve"
EXTENSIONS = ("binary_tensor_data", "statistics", "model_repository")


def version_order(version: str) -> tuple[int, str]:
    """Triton's versions are integers: "10" is after "9"; anything else sorts after them."""
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class ServedModels:
    def __init__(self, server_version: str) -> None:
        self.server_version = server_version
        self._versions: dict[str, dict[str, ModelService]] = {}  # name -> version -> service, in version order
        self._latest: dict[str, ModelService] = {}  # name -> its highest loaded version
        self._metadata: dict[tuple, object] = {}  # (name, version or None, encoder) -> encoded metadata, kept per swap

    def swap(self, name: str, services: dict[str, ModelService]) -> list[ModelService]:
        """Serve exactly `services` ({} unloads) as `name`'s versions from now on; returns the services
        no longer served, for the caller to stop (their queued requests are answered first)."""
        old = self._versions.get(name, {})
        retired = [service for version, service in old.items() if services.get(version) is not service]
        if services:
            self._versions[name] = dict(sorted(services.items(), key=lambda item: version_order(item[0])))
            self._latest[name] = self._versions[name][max(services, key=version_order)]
        else:
            self._versions.pop(name, None)
            self._latest.pop(name, None)
        self._metadata = {key: value for key, value in self._metadata.items() if key[0] != name}
        return retired

    def resolve(self, name: str, version: str | None = None) -> ModelService:
        """The service for `name` and `version` (None or "": the highest loaded one), or 404."""
        if not version:
            service = self._latest.get(name)
            if service is None:
                raise self._unknown(name)
            return service
        versions = self._versions.get(name)
        if versions is None:
            raise self._unknown(name)
        service = versions.get(version)
        if service is None:
            raise ProtocolError(404, f"unknown version {version!r} of {name!r}; it has version{'s' * (len(versions) > 1)} "
                                     f"{', '.join(map(repr, versions))}")
        return service

    def _unknown(self, name: str) -> ProtocolError:
        held = ", ".join(map(repr, self._versions)) or "none"
        return ProtocolError(404, f"unknown model {name!r}; this server has {held}")

    def versions(self, name: str) -> list[str]:
        return list(self._versions.get(name, {}))

    def names(self) -> list[str]:
        return sorted(self._versions)

    def __iter__(self) -> Iterator[ModelService]:
        """Every loaded version's service."""
        for versions in list(self._versions.values()):
            yield from versions.values()

    @property
    def ready(self) -> bool:
        """The server is ready when every loaded version's inference thread runs (Triton's: a model
        unloaded on purpose does not make the server unready)."""
        return all(service.running for service in self)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        try:
            return self.resolve(name, version).running
        except ProtocolError:
            return False

    def metadata_json(self, name: str, version: str | None, encode) -> bytes:
        """The model's metadata (`version` None: the highest loaded version's, listing every loaded
        version), encoded by `encode` once per swap."""
        key = (name, version or None, encode)
        cached = self._metadata.get(key)
        if cached is None:
            service = self.resolve(name, version)
            cached = self._metadata[key] = encode(service.metadata([version] if version else self.versions(name)))
        return cached

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": self.server_version, "extensions": list(EXTENSIONS)}

    def statistics(self, name: str | None = None, version: str | None = None) -> dict:
        """Triton's statistics response: every loaded version, a model's, or one version's."""
        if name is None:
            services = list(self)
        elif version:
            services = [self.resolve(name, version)]
        else:
            self.resolve(name)
            services = list(self._versions[name].values())
        return {"model_stats": [service.statistics_entry() for service in services]}

    def index(self) -> list[dict]:
        """Triton's repository index entries of the loaded versions."""
        return [{"name": service.name, "version": service.version, "state": "READY" if service.running else "UNAVAILABLE",
                 "reason": "" if service.running else "its inference thread has stopped"} for service in self]
