"""Time a cold start of an AOTInductor package, as a fresh server process sees it.

Usage:
    python -m export.cold_start artifacts/model.aoti.pt2

Prints one JSON line, for each way to load (LOADERS), the seconds to import torch, to load the
package and to answer the first call (one zero row, on the package's device), and their sum:
  direct  torch._C._aoti.AOTIModelPackageLoader, the C++ loader the public call wraps (what the
          gate, the bench and the C++ program use): timed first, in this fresh process
  public  torch._inductor.aoti_load_package, the documented call, timed next in the same process:
          its load includes importing torch._inductor and torch._dynamo (seconds on a small CPU);
          the package is extracted and its .so loaded again, so only `import torch` is shared
`make export` runs it in a new process and keeps the line in export_report.json; nothing is cached
from earlier runs except what the operating system caches (the files).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from export.aoti_package import DEVICE_KEY, INPUT_SHAPE, check_cpu, open_package, package_metadata

LOADERS = ("direct", "public")


def first_answer(path: Path, way: str, metadata: dict[str, str]) -> tuple[float, float]:
    """(seconds to load the package `way`, seconds to answer one zero row)."""
    import torch

    started = time.perf_counter()
    model = open_package(path, metadata) if way == "direct" else torch._inductor.aoti_load_package(str(path))
    loaded = time.perf_counter()
    device = "cuda" if metadata[DEVICE_KEY] == "cuda" else "cpu"
    out = model(torch.zeros([1, *(int(d) for d in metadata[INPUT_SHAPE].split(","))], device=device))
    if device == "cuda":
        torch.cuda.synchronize()
    answered = time.perf_counter()
    if out.ndim != 2 or out.shape[0] != 1:
        raise SystemExit(f"{path}: the first call returned shape {tuple(out.shape)}")
    return loaded - started, answered - loaded


def main(argv: list[str] | None = None) -> int:
    (package,) = argv if argv is not None else sys.argv[1:]
    path = Path(package)
    metadata = package_metadata(path)
    check_cpu(path, metadata)  # before either loader touches the package
    started = time.perf_counter()
    import torch  # noqa: F401  (timed: a server pays for it too)

    import_torch = time.perf_counter() - started
    timings = {}
    for way in LOADERS:
        load, first_call = first_answer(path, way, metadata)
        timings[way] = {"import_torch": import_torch, "load": load, "first_call": first_call,
                        "total": import_torch + load + first_call}
    print(json.dumps(timings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
