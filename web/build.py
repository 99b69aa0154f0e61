"""Build the browser page into the bundle: ONNX Runtime Web runs the bundle's model on the user's device.

Usage:
    python -m web.build [--artifacts DIR] [--eval-rows N] [--node-modules web/node_modules]
    make web                                   # the same, for $(ARTIFACTS), after `make deploy`

Reads the verified bundle <artifacts>/deploy (every variant it holds, and the model contract from
its model.onnx), the held-out rows the parity gate judged (<artifacts>/held_out.npz) and its
tolerance (parity.json), and onnxruntime-web's plain wasm build from node_modules (pinned by
web/package-lock.json: `npm ci` in web/). Torch-free, like the bundle it goes into. Writes <artifacts>/deploy/web/, replaced as a whole, and lists every file in the
bundle's manifest.json (section "web"). The folder is self-contained: `make serve` serves it at `/`
with the cross-origin isolation headers that give ONNX Runtime Web threads; any static server serves
it single-threaded.
    index.html, app.js, *.js, style.css   the page (web/page/, copied)
    page.json                             the contract, the variants, the evaluation files, the targets
    ort/                                  ort.wasm.bundle.min.mjs + ort-wasm-simd-threaded.wasm
    models/                               every variant's ONNX file, byte for byte
    eval/                                 held-out rows + Python ORT's probabilities (web.evaluation)
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from deploy.bundle import rebuild_hint
from handoff.artifacts import BUNDLE, MANIFEST, ONNX, REFERENCE_VARIANT, WEB, WEB_INDEX, WEB_SPEC
from handoff.atomic import replace_folder, write_json
from handoff.cli import run_cli
from handoff.contract import InputFormat, load_contract
from handoff.errors import PipelineError
from handoff.held_out import read_held_out
from handoff.manifest import read_manifest, record, verify
from handoff.otto_csv import FEATURES
from handoff.reports import read_parity
from web.evaluation import evaluation_files

PRODUCER = "python -m web.build"
PAGE_SOURCES = Path(__file__).resolve().parent / "page"
PAGE_SUFFIXES = (".html", ".js", ".css")  # not an editor's swap file or a .DS_Store
RUNTIME_PACKAGE = "onnxruntime-web"
# The plain wasm build: CPU only, no WebGPU/WebNN glue (the .jsep build is 28 MB against 14 MB, for
# a model this small a GPU dispatch costs more than the math). The bundle finds its .wasm beside itself.
RUNTIME_FILES = ("ort.wasm.bundle.min.mjs", "ort-wasm-simd-threaded.wasm")
MNIST_DIGIT_BOX = 20 / 28  # MNIST's digits were scaled into 20 x 20 of the 28 x 28 frame
VARIANT_MIN_AGREEMENT = 0.999  # a lower-precision variant in the browser against Python's run of the same file


@dataclass(frozen=True)
class WebConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder whose deploy/ bundle gets the page"})
    eval_rows: int = field(default=0, metadata={"help": "held-out rows shipped for the evaluation panel (0: all)"})
    node_modules: str = field(default=str(Path(__file__).resolve().parent / "node_modules"),
                              metadata={"help": "where `npm ci` put onnxruntime-web"})

    def __post_init__(self) -> None:
        if self.eval_rows < 0:
            raise PipelineError(f"eval_rows must be >= 0, got {self.eval_rows}")


def runtime(node_modules: Path) -> tuple[str, list[Path]]:
    """(onnxruntime-web's version, its runtime files) from node_modules, as package-lock.json pins it."""
    package = node_modules / RUNTIME_PACKAGE
    if not (package / "package.json").is_file():
        raise PipelineError(f"{package}: not installed; run `npm ci` in web/ (make web does)")
    version = json.loads((package / "package.json").read_text())["version"]
    lock = json.loads((Path(__file__).resolve().parent / "package-lock.json").read_text())
    pinned = lock["packages"][f"node_modules/{RUNTIME_PACKAGE}"]["version"]
    if version != pinned:
        raise PipelineError(f"{package} is {version}, package-lock.json pins {pinned}; run `npm ci` in web/")
    return version, [package / "dist" / name for name in RUNTIME_FILES]


def input_spec(model: dict[str, Any]) -> dict[str, Any]:
    """How the page takes one sample, from the contract: a drawing for images, else one field per value."""
    if model["input_format"] == InputFormat.GRAYSCALE_IMAGE:
        height, width = model["input_shape"][-2:]
        return {"kind": "drawing", "height": height, "width": width, "box": round(MNIST_DIGIT_BOX * min(height, width))}
    size = 1
    for dim in model["input_shape"]:
        size *= dim
    names = list(FEATURES) if model["input_format"] == InputFormat.OTTO_CSV else [f"x{i}" for i in range(size)]
    return {"kind": "fields", "fields": names}


def held_out(config: WebConfig):
    """(float32 inputs, labels, split name, every row?): the first `eval_rows` rows the parity gate
    judged (all when 0)."""
    rows = read_held_out(Path(config.artifacts))
    total = len(rows.labels)
    count = min(config.eval_rows or total, total)
    return rows.inputs[:count], rows.labels[:count], rows.split, count == total


def page_files(config: WebConfig, bundle: Path, manifest: dict[str, Any]) -> tuple[dict[str, bytes | Path], dict[str, Any]]:
    """(path in web/ -> bytes or a file to copy, page.json) for the page."""
    model, variants = asdict(load_contract(bundle / ONNX)), manifest["variants"]
    version, runtime_files = runtime(Path(config.node_modules))
    files: dict[str, bytes | Path] = {p.name: p for p in sorted(PAGE_SOURCES.iterdir()) if p.suffix in PAGE_SUFFIXES}
    files.update({f"ort/{p.name}": p for p in runtime_files})
    files.update({f"models/{v['file']}": bundle / v["file"] for v in variants.values()})
    inputs, labels, split, every_row = held_out(config)
    evaluation, spec = evaluation_files(inputs, labels, len(model["classes"]),
                                        {name: bundle / v["file"] for name, v in variants.items()}, model["input_name"])
    files.update(evaluation)
    _check_accuracy(spec, variants, full=every_row)
    page = {
        "model": model,
        "input": input_spec(model),
        "default_variant": manifest["default_variant"],
        "reference_variant": REFERENCE_VARIANT,
        "variants": {name: {"file": f"models/{v['file']}", "card_accuracy": v["accuracy"]} for name, v in variants.items()},
        "evaluation": {**spec, "split": split, "every_row": every_row, "targets": targets(Path(config.artifacts)),
                       "reference_runtime": f"onnxruntime {ort.__version__} (Python, CPU, one row a call)"},
        "runtime": {"package": RUNTIME_PACKAGE, "version": version, "module": f"ort/{RUNTIME_FILES[0]}"},
    }
    return files, page


def targets(artifacts: Path) -> dict[str, dict[str, float]]:
    """The page's verdicts against Python's ONNX Runtime: fp32 within the parity gate's own tolerance."""
    return {REFERENCE_VARIANT: {"min_agreement": 1.0, "max_abs": read_parity(artifacts).abs_tolerance},
            "variant": {"min_agreement": VARIANT_MIN_AGREEMENT}}


def _check_accuracy(spec: dict[str, Any], variants: dict[str, Any], full: bool) -> None:
    """On every held-out row, fp32's reference accuracy is the model card's (both ORT on the same rows)."""
    measured, card = spec["reference"][REFERENCE_VARIANT]["accuracy"], variants[REFERENCE_VARIANT]["accuracy"]
    if full and card is not None and abs(measured - card) > 0.5 / spec["rows"]:
        raise PipelineError(f"fp32 held-out accuracy {measured:.4%} differs from the model card's {card:.4%}: "
                            "the rows or the model are not the bundle's")


def write_page(folder: Path, files: dict[str, bytes | Path], page: dict[str, Any]) -> list[str]:
    """Write the page into the empty `folder`; returns the names written (page.json last)."""
    for name, source in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copyfile(source, target)
        else:
            target.write_bytes(source)
    page["bytes"] = sizes(folder, list(files))
    write_json(folder / WEB_SPEC, page)
    return [*files, WEB_SPEC]


def sizes(folder: Path, names: list[str]) -> dict[str, int]:
    """Bytes per part of the page: what a visitor downloads to classify (page + runtime + one model),
    and what the evaluation panel fetches on demand."""
    size = {name: (folder / name).stat().st_size for name in names}
    part = {"page": 0, "runtime": 0, "models": 0, "evaluation": 0}
    for name, count in size.items():
        part["runtime" if name.startswith("ort/") else "models" if name.startswith("models/")
             else "evaluation" if name.startswith("eval/") else "page"] += count
    return part


def run(config: WebConfig) -> None:
    """Build the page beside the bundle's, then swap it in. The old page's entries leave the manifest
    before the swap and the new ones enter after it, so an interrupted build leaves a bundle that
    loads (its web/ unlisted, so unserved) and that the next `make web` rebuilds."""
    bundle = Path(config.artifacts) / BUNDLE
    if not (bundle / MANIFEST).is_file():
        raise PipelineError(f"{bundle}: no deploy bundle; build one first (`make deploy`)")
    manifest = read_manifest(bundle, rebuild_hint(bundle))
    verify(bundle, [name for name in manifest["artifacts"] if not name.startswith(f"{WEB}/")], rebuild_hint(bundle))
    files, page = page_files(config, bundle, manifest)
    building = Path(tempfile.mkdtemp(dir=bundle, prefix=f".{WEB}.building."))
    building.chmod(0o755)
    try:
        names = write_page(building, files, page)
        record(bundle, [], PRODUCER, replacing=f"{WEB}/")
        replace_folder(building, bundle / WEB)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    record(bundle, [f"{WEB}/{name}" for name in sorted(names)], PRODUCER,
           web={"page": f"{WEB}/{WEB_INDEX}", "onnxruntime_web": page["runtime"]["version"], "bytes": page["bytes"],
                "evaluation_rows": page["evaluation"]["rows"], "config": asdict(config)})
    megabytes = ", ".join(f"{part} {count / 1e6:.2f} MB" for part, count in page["bytes"].items())
    print(f"{bundle / WEB}: {len(names)} files for {', '.join(page['variants'])}; {megabytes} "
          f"(onnxruntime-web {page['runtime']['version']}); recorded in {bundle / MANIFEST}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(WebConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
