"""Triton's restricted APIs (`--restricted-api repository,statistics,metrics --restricted-header
KEY=VALUE`): a request to a restricted group of routes or gRPC methods is refused, 403 over HTTP and
PERMISSION_DENIED over gRPC, unless it carries the header KEY with VALUE (gRPC: the metadata key,
lower-case as HTTP/2 sends it); torch-free.

Groups, each route's and method's in deploy.serve.http_app and deploy.serve.grpc_service: health,
metadata, inference, repository (Triton's model-repository), statistics, metrics (HTTP only). The
browser page is never restricted: a browser cannot add a header to a page load.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from deploy.serve.protocol import ProtocolError

GROUPS = ("health", "metadata", "inference", "repository", "statistics", "metrics")
ALIASES = {"model-repository": "repository"}  # Triton's name for the same group


@dataclass(frozen=True)
class Restriction:
    groups: frozenset[str]
    header: bytes  # lower-case name
    value: bytes

    @classmethod
    def parse(cls, groups: str | None, header: str | None) -> Restriction | None:
        """From the two flags; None when nothing is restricted. ValueError says what is wrong."""
        if not groups:
            if header:
                raise ValueError("--restricted-header needs --restricted-api (which groups it guards)")
            return None
        names = {ALIASES.get(g.strip(), g.strip()) for g in groups.split(",") if g.strip()}
        unknown = names - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown API group{'s' * (len(unknown) > 1)} {', '.join(sorted(unknown))}; use {', '.join(GROUPS)}")
        key, sep, value = (header or "").partition("=")
        if not sep or not key.strip() or not value:
            raise ValueError("--restricted-api needs --restricted-header KEY=VALUE (the header a client must send)")
        return cls(frozenset(names), key.strip().lower().encode("latin-1"), value.encode("latin-1"))

    def check(self, group: str, headers: Iterable[tuple[bytes, bytes]]) -> None:
        """ProtocolError(403) unless `group` is open or `headers` carry the key with its value."""
        if group not in self.groups:
            return
        for name, value in headers:
            if name == self.header:
                if hmac.compare_digest(value, self.value):  # no timing oracle on the key
                    return
                break
        raise ProtocolError(403, f"this API is restricted ({group}); expecting header {self.header.decode()!r} with the server's key")
