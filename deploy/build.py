"""Build the deploy bundle from the verified export, torch-free.

Usage:
    python -m deploy.build [--artifacts DIR] [--variant fp32|int8|int8-dynamic|fp16] [--max-batch N]
                           [--max-queue-delay-us US] [--max-queue-size N] [--cpu-instances N] [--storage-uri URI]
    make deploy [VARIANT=int8]                  # the same, for $(ARTIFACTS)

Reads <artifacts>/model.onnx, parity.json, train_metrics.json, variants.json, ort_tuning.json and
the chosen variant's file (each checked against <artifacts>/manifest.json; the parity gate and the
variant's own gate must have passed) and bench/results.json when a bench run exists. Writes
<artifacts>/deploy/, replaced as a whole (built beside it, then renamed in):
    model.onnx                      the exported fp32 model, byte for byte: always there, the reference
    model.<variant>.onnx            the chosen variant's file, byte for byte, unless it is fp32
    manifest.json                   sha256 and size of every file below; model contract; configs;
                                    default variant, each variant's gate numbers, tuned ORT options
    requirements.txt                the torch-free serving dependencies, pinned as in pyproject.toml
    MODEL_CARD.md                   model details, intended use, data, metrics, variants, contract, versions
    triton/<model>/...              a Triton model repository serving the chosen variant (deploy.triton)
    kserve/inferenceservice.yaml    a KServe InferenceService for that repository
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from deploy import model_card, triton, variants
from deploy.batcher import BatchPolicy
from deploy.contract import Contract, read_contract
from pipeline.handoff import artifacts
from pipeline.handoff.artifacts import BUNDLE, MANIFEST, ONNX, REFERENCE_VARIANT
from pipeline.handoff.atomic import atomic_path, write_json
from pipeline.handoff.cli import run_cli
from pipeline.handoff.errors import PipelineError
from pipeline.handoff.manifest import file_entries, read_manifest, verify
from pipeline.handoff.reports import ParityReport, TrainReport, read_parity, read_train

DISTRIBUTION = "mnist-pipeline"  # pyproject.toml's [project] name: its `deploy` extra is requirements.txt
DEPLOY_EXTRA = 'extra == "deploy"'
PRODUCER = "python -m deploy.build"


@dataclass(frozen=True)
class DeployConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder with the verified export; the bundle goes to ARTIFACTS/deploy"})
    variant: str = field(default=REFERENCE_VARIANT, metadata={
        "help": "the bundle's default model, a variant that passed its gate in variants.json (fp32, int8, "
                "int8-dynamic, fp16); model.onnx (fp32) is always kept as the reference"})
    max_batch: int = field(default=BatchPolicy.max_batch_rows, metadata={"help": "largest batch Triton and mlp-serve accept per request"})
    # Dynamic batching, the same in mlp-serve and Triton. Delay 0 (batches form from what queues while
    # one runs) measured best on 2 cores at 1-64 clients: docs/deploy.md, `make bench-serve`.
    max_queue_delay_us: int = field(default=BatchPolicy.max_queue_delay_us, metadata={"help": "dynamic batching: longest wait after a request arrives to fill a batch, in µs"})
    max_queue_size: int = field(default=BatchPolicy.max_queue_size, metadata={"help": "dynamic batching: queued requests beyond which new ones get 503 / UNAVAILABLE"})
    cpu_instances: int = field(default=1, metadata={"help": "Triton model instances on CPU"})
    storage_uri: str = field(
        default="s3://YOUR-BUCKET/PATH/triton",
        metadata={"help": "where the Triton repository will be uploaded, for the KServe manifest (fill in)"},
    )

    def __post_init__(self) -> None:
        for name in ("max_batch", "max_queue_size", "cpu_instances"):
            if getattr(self, name) < 1:
                raise PipelineError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_queue_delay_us < 0:
            raise PipelineError(f"max_queue_delay_us must be >= 0, got {self.max_queue_delay_us}")


def requirements() -> list[str]:
    """The `deploy` extra of the installed distribution, its own markers kept, the extra's dropped.

    Read from the installed metadata (importlib.metadata), so it is pyproject.toml's list in an
    editable install and a wheel alike. Our markers are `A and extra == "deploy"` at most, so
    dropping that one clause is exact.
    """
    try:
        specs = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise PipelineError(f"{DISTRIBUTION} is not installed (`make setup`); its metadata lists the deploy requirements") from err
    lines = []
    for spec in specs:
        requirement, _, marker = (part.strip() for part in spec.partition(";"))
        clauses = [c.strip() for c in marker.split(" and ")] if marker else []
        if DEPLOY_EXTRA in clauses:
            rest = [c for c in clauses if c != DEPLOY_EXTRA]
            lines.append(requirement + (f"; {' and '.join(rest)}" if rest else ""))
    if not lines:
        raise PipelineError(f"{DISTRIBUTION}'s metadata has no `deploy` extra; reinstall it (`make setup`)")
    return lines


@dataclass(frozen=True)
class Sources:
    """The verified stage records a bundle is built from."""

    manifest: dict[str, Any]  # the export's manifest.json: its config, versions and parity verdict go into the bundle's
    train: TrainReport
    parity: ParityReport
    bench: dict[str, Any] | None  # bench/results.json (pytest-benchmark's JSON) when a bench run exists
    serving: dict[str, Any]  # deploy.variants.serving: the default variant, the bundled ones, their ORT options


def read_sources(out: Path, variant: str) -> Sources:
    verify(out, [ONNX, artifacts.PARITY, artifacts.TRAIN_METRICS])
    parity = read_parity(out)
    if not parity.passed:
        raise PipelineError(f"{out / artifacts.PARITY}: the parity gate failed; fix the export before deploying it")
    report, tuning = variants.read_sources(out, variant)
    bench_path = out / artifacts.BENCH_RESULTS
    train = read_train(out)
    return Sources(read_manifest(out), train, parity, json.loads(bench_path.read_text()) if bench_path.is_file() else None,
                   variants.serving(report, tuning, variant, train))


def read_contracts(folder: Path, files: list[str]) -> Contract:
    """The contract every bundled file shares; a variant whose inputs, outputs or metadata differ
    from model.onnx's would answer differently to the same request, so it is refused."""
    contracts = {}
    for name in files:
        session = ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])
        contracts[name] = read_contract(session, folder / name)
    reference = contracts[ONNX]
    for name, contract in contracts.items():
        if contract != reference:
            differ = [k for k, v in dataclasses.asdict(contract).items() if dataclasses.asdict(reference)[k] != v]
            raise PipelineError(f"{name}: its contract differs from {ONNX}'s ({', '.join(differ)}); re-run `make export`")
    return reference


def write_bundle(config: DeployConfig, sources: Sources, folder: Path) -> None:
    """Write every bundle file into `folder` (empty), manifest.json last."""
    out, serving, export_manifest = Path(config.artifacts), sources.serving, sources.manifest
    models = [entry["file"] for entry in serving["variants"].values()]  # model.onnx first
    for name in models:
        shutil.copyfile(out / name, folder / name)
    contract = read_contracts(folder, models)
    default = folder / serving["variants"][config.variant]["file"]  # what Triton serves
    triton_config = triton.model_config(contract.model_name, default, config.max_batch, config.max_queue_delay_us,
                                        config.max_queue_size, config.cpu_instances)
    written = triton.write_repository(folder / "triton", contract.model_name, default, contract.classes, triton_config)
    texts = {
        "requirements.txt": "# Serving dependencies (no torch), pinned as in pyproject.toml's `deploy` extra\n"
        + "\n".join(requirements()) + "\n",
        "kserve/inferenceservice.yaml": triton.kserve_manifest(contract.model_name, config.storage_uri),
        "MODEL_CARD.md": model_card.render(
            contract, sources.train, export_manifest, sources.parity, sources.bench,
            {name: export_manifest["artifacts"][name]["sha256"] for name in models}, dataclasses.asdict(config), serving,
        ),
    }
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)
    names = [*models, *texts, *(str(p.relative_to(folder)) for p in written)]
    write_json(folder / MANIFEST, {
        "artifacts": file_entries(folder, sorted(names), PRODUCER),
        "model": dataclasses.asdict(contract),
        "config": {"deploy": dataclasses.asdict(config), "train": export_manifest["config"]["train"]},
        "source": {"export_manifest": str(out / MANIFEST), "model_sha256": export_manifest["artifacts"][ONNX]["sha256"],
                   "parity": export_manifest["parity"]},
        "versions": {"onnxruntime": ort.__version__, **export_manifest["versions"]},
        **serving,
    })


def replace_folder(built: Path, target: Path) -> None:
    """Swap `built` in as `target`: readers see the old bundle or the new one, never a mix."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        target.rename(old / target.name)
    built.rename(target)
    if old is not None:
        shutil.rmtree(old)


def run(config: DeployConfig) -> None:
    out = Path(config.artifacts)
    sources = read_sources(out, config.variant)
    building = Path(tempfile.mkdtemp(dir=out, prefix=f".{BUNDLE}.building."))
    building.chmod(0o755)  # mkdtemp makes it private; the bundle is for others to read
    try:
        write_bundle(config, sources, building)
        replace_folder(building, out / BUNDLE)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    manifest = read_manifest(out / BUNDLE)
    print(f"{out / BUNDLE}: model {manifest['model']['model_name']} version {manifest['model']['version']}, "
          f"default variant {manifest['default_variant']} (of {', '.join(manifest['variants'])}), "
          f"{len(manifest['artifacts'])} files in manifest.json")


def main(argv: list[str] | None = None) -> int:
    return run_cli(DeployConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
