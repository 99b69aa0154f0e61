"""The bundle's browser page (`make web`: web/ in the bundle), served by mlp-serve at `/`; torch-free.

Every file under web/ that the bundle's manifest lists is read once at start-up, checked against its
sha256 and answered from memory: `/` is web/index.html, `/<path>` is web/<path>. The answers carry
  - the type the browser insists on (application/wasm for streaming compilation, text/javascript for
    modules),
  - the cross-origin isolation headers (COOP same-origin + COEP require-corp): with them the page may
    use SharedArrayBuffer, so ONNX Runtime Web runs threads; a plain static server gives one thread,
  - an ETag (the sha256) with `Cache-Control: no-cache`: a browser keeps the 14 MB of wasm and asks
    again with If-None-Match, answered 304 while the file is the same,
  - gzip when the browser accepts it (`Accept-Encoding`), compressed once here: the 14.3 MB wasm
    goes as 3.7 MB (compressed at start-up: 0.65 s on a 2-core EPYC). The gzipped answer has its own ETag (RFC 9110 §8.8.3: another representation)
    and every answer says `Vary: Accept-Encoding`, so a cache never hands one to the wrong client.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from deploy.errors import DeployError, ExitCode
from handoff.artifacts import WEB
from handoff.manifest import read_manifest

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".json": "application/json", ".wasm": "application/wasm", ".gz": "application/gzip",
}
COMPRESSIBLE = {".html", ".js", ".mjs", ".css", ".json", ".wasm"}  # .gz is compressed already
GZIP_LEVEL = 6  # zlib's default: within 3% of level 9's size on the wasm, at a third of its time
ISOLATION = [(b"cross-origin-opener-policy", b"same-origin"), (b"cross-origin-embedder-policy", b"require-corp"),
             (b"cross-origin-resource-policy", b"same-origin")]


@dataclass(frozen=True)
class PageFile:
    body: bytes
    etag: bytes  # quoted sha256, as If-None-Match sends it back
    headers: list[tuple[bytes, bytes]]
    gzipped: PageFile | None = None  # the same file gzip-encoded, when that is smaller


def _gzipped(body: bytes, etag: bytes, headers: list[tuple[bytes, bytes]]) -> PageFile | None:
    packed = gzip.compress(body, GZIP_LEVEL, mtime=0)  # mtime 0: the same bytes, and ETag, on every start
    if len(packed) >= len(body):
        return None
    gz_etag = etag[:-1] + b'-gzip"'
    gz_headers = [(name, gz_etag if name == b"etag" else value) for name, value in headers]
    return PageFile(packed, gz_etag, [*gz_headers, (b"content-encoding", b"gzip")])


def load_pages(bundle: Path) -> dict[str, PageFile]:
    """URL path -> file, for every web/ file the bundle's manifest lists; {} when it has no page."""
    pages = {}
    for name, entry in read_manifest(bundle)["artifacts"].items():
        if not name.startswith(f"{WEB}/"):
            continue
        body = (Path(bundle) / name).read_bytes()
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            raise DeployError(f"{bundle / name}: changed since the bundle was verified; remove {bundle / WEB} and run `make web`",
                              ExitCode.BAD_MODEL)
        path = PurePosixPath(name).relative_to(WEB)
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        etag = f'"{entry["sha256"]}"'.encode()
        headers = [(b"content-type", content_type.encode()), (b"etag", etag), (b"cache-control", b"no-cache"), *ISOLATION]
        if path.suffix in COMPRESSIBLE and len(body) > 1024:
            headers.append((b"vary", b"accept-encoding"))
            pages[f"/{path}"] = PageFile(body, etag, headers, _gzipped(body, etag, headers))
        else:
            pages[f"/{path}"] = PageFile(body, etag, headers)
    if "/index.html" in pages:
        pages["/"] = pages["/index.html"]
    return pages
