"""Build the deploy bundle from the verified export, torch-free.

Usage:
    python -m deploy.build [--artifacts DIR] [--variant fp32|int8|int8-dynamic|fp16] [--max-batch N]
                           [--max-queue-delay-us US] [--max-queue-size N] [--cpu-instances N] [--storage-uri URI]
    make deploy [VARIANT=int8]                  # the same, for $(ARTIFACTS)

Reads <artifacts>/model.onnx, parity.json, train_metrics.json, variants.json, ort_tuning.json and
the chosen variant's file (each checked against <artifacts>/manifest.json; the parity gate and the
variant's own gate must have passed) and bench/results.json when a bench run exists (quoted in the
model card; a later bench run does not make the bundle stale). Every flag and file is checked
before anything is written. Writes <artifacts>/deploy/, replaced as a whole (built beside it, then
renamed in), so a failed build leaves the previous bundle whole:
    model.onnx                      the exported fp32 model, byte for byte: always there, the reference
    model.<variant>.onnx            the chosen variant's file, byte for byte, unless it is fp32
    manifest.json                   sha256 and size of every file below; model contract; configs (the
                                    batching limits resolved); default variant, each variant's gate
                                    numbers, tuned ORT options
    requirements.txt                the torch-free serving dependencies, pinned as in pyproject.toml
    MODEL_CARD.md                   model details, intended use, data, metrics, variants, contract, versions
    triton/<model>/...              a Triton model repository serving the chosen variant (deploy.build.triton)
    kserve/inferenceservice.yaml    a KServe InferenceService for that repository
A page `make web` built into the previous bundle is not carried over (it holds the old models):
`make web` builds it again, and `make deploy` and `make serve` do so once `make web` has run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from deploy.batch_policy import BatchPolicy
from deploy.build import model_card, serving, triton
from deploy.build.requirements import requirements_txt
from handoff import artifacts
from handoff.artifacts import BUNDLE, MANIFEST, ONNX, REFERENCE_VARIANT, WEB
from handoff.atomic import atomic_path, replace_folder, write_json
from handoff.cli import run_cli
from handoff.contract import Contract, load_contract
from handoff.errors import PipelineError
from handoff.manifest import file_entries, read_manifest, verify
from handoff.reports import ParityReport, TrainReport, read_parity, read_train

PRODUCER = "python -m deploy.build"
DEFAULTS = BatchPolicy()


@dataclass(frozen=True)
class DeployConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder with the verified export; the bundle goes to ARTIFACTS/deploy"})
    variant: str = field(default=REFERENCE_VARIANT, metadata={
        "help": "the bundle's default model, a variant that passed its gate in variants.json (fp32, int8, "
                "int8-dynamic, fp16); model.onnx (fp32) is always kept as the reference"})
    # The batching limits, the same in mlp-serve and Triton; None: deploy.batch_policy's defaults.
    max_batch: int | None = field(default=None, metadata={
        "help": f"rows per request and per ONNX Runtime call, in Triton and mlp-serve (default {DEFAULTS.max_batch})"})
    max_queue_delay_us: int | None = field(default=None, metadata={
        "help": f"dynamic batching: longest wait to fill a batch, µs (default {DEFAULTS.max_queue_delay_us})"})
    max_queue_size: int | None = field(default=None, metadata={
        "help": f"dynamic batching: queued requests beyond which new ones get 503 / UNAVAILABLE (default {DEFAULTS.max_queue_size})"})
    cpu_instances: int = field(default=1, metadata={"help": "Triton model instances on CPU"})
    storage_uri: str = field(
        default="s3://YOUR-BUCKET/PATH/triton",
        metadata={"help": "where the Triton repository will be uploaded, for the KServe manifest (fill in)"},
    )

    def __post_init__(self) -> None:
        self.batching()  # a bad limit fails here, before anything is read or written
        if self.cpu_instances < 1:
            raise PipelineError(f"cpu_instances must be at least 1, got {self.cpu_instances}")

    def batching(self) -> BatchPolicy:
        return BatchPolicy.resolve({f.name: getattr(self, f.name) for f in dataclasses.fields(BatchPolicy)})


@dataclass(frozen=True)
class StageRecords:
    """The verified records of the stages before, that a bundle is built from."""

    manifest: dict[str, Any]  # the export's manifest.json: its config, versions and parity verdict go into the bundle's
    train: TrainReport
    parity: ParityReport
    bench: dict[str, Any] | None  # bench/results.json (pytest-benchmark's JSON) when a bench run exists
    serving: dict[str, Any]  # deploy.build.serving.sections: the default variant, the bundled ones, their ORT options


def read_records(out: Path, variant: str) -> StageRecords:
    verify(out, [ONNX, artifacts.PARITY, artifacts.TRAIN_METRICS])
    parity = read_parity(out)
    if not parity.passed:
        raise PipelineError(f"{out / artifacts.PARITY}: the parity gate failed; fix the export before deploying it")
    report, tuning = serving.read_variant_records(out, variant)
    bench_path = out / artifacts.BENCH_RESULTS
    train = read_train(out)
    return StageRecords(read_manifest(out), train, parity, json.loads(bench_path.read_text()) if bench_path.is_file() else None,
                        serving.sections(report, tuning, variant, train))


def read_contracts(folder: Path, files: list[str]) -> Contract:
    """The contract every bundled file shares; a variant whose inputs, outputs or metadata differ
    from model.onnx's would answer differently to the same request, so it is refused."""
    contracts = {name: load_contract(folder / name) for name in files}
    reference = contracts[ONNX]
    for name, contract in contracts.items():
        if contract != reference:
            differ = [k for k, v in dataclasses.asdict(contract).items() if dataclasses.asdict(reference)[k] != v]
            raise PipelineError(f"{name}: its contract differs from {ONNX}'s ({', '.join(differ)}); re-run `make export`")
    return reference


def write_bundle(config: DeployConfig, records: StageRecords, folder: Path) -> None:
    """Write every bundle file into `folder` (empty), manifest.json last."""
    out, sections, export_manifest = Path(config.artifacts), records.serving, records.manifest
    models = [entry["file"] for entry in sections["variants"].values()]  # model.onnx first
    for name in models:
        shutil.copyfile(out / name, folder / name)
    contract = read_contracts(folder, models)
    policy = config.batching()
    default = folder / sections["variants"][config.variant]["file"]  # what Triton serves
    triton_config = triton.model_config(contract.model_name, default, policy, config.cpu_instances)
    written = triton.write_repository(folder / artifacts.TRITON, contract.model_name, default, contract.classes, triton_config)
    resolved = {**dataclasses.asdict(config), **policy.as_dict()}  # the limits as served, defaults filled in
    texts = {
        artifacts.REQUIREMENTS: requirements_txt(),
        artifacts.KSERVE_MANIFEST: triton.kserve_manifest(contract.model_name, config.storage_uri),
        artifacts.MODEL_CARD: model_card.render(
            contract, records.train, export_manifest, records.parity, records.bench,
            {name: export_manifest["artifacts"][name]["sha256"] for name in models}, resolved, sections,
        ),
    }
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)
    names = [*models, *texts, *(str(p.relative_to(folder)) for p in written)]
    write_json(folder / MANIFEST, {
        "artifacts": file_entries(folder, sorted(names), PRODUCER),
        "model": dataclasses.asdict(contract),
        "config": {"deploy": resolved, "train": export_manifest["config"]["train"]},
        "source": {"export_manifest": str(out / MANIFEST), "model_sha256": export_manifest["artifacts"][ONNX]["sha256"],
                   "parity": export_manifest["parity"]},
        "versions": {"onnxruntime": ort.__version__, **export_manifest["versions"]},
        **sections,
    })


def run(config: DeployConfig) -> None:
    out = Path(config.artifacts)
    records = read_records(out, config.variant)
    had_page = (out / BUNDLE / WEB).is_dir()
    building = Path(tempfile.mkdtemp(dir=out, prefix=f".{BUNDLE}.building."))
    building.chmod(0o755)  # mkdtemp makes it private; the bundle is for others to read
    try:
        write_bundle(config, records, building)
        replace_folder(building, out / BUNDLE)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    manifest = read_manifest(out / BUNDLE)
    print(f"{out / BUNDLE}: model {manifest['model']['model_name']} version {manifest['model']['version']}, "
          f"default variant {manifest['default_variant']} (of {', '.join(manifest['variants'])}), "
          f"{len(manifest['artifacts'])} files in manifest.json")
    if had_page:
        print(f"{out / BUNDLE / WEB}: the previous bundle's page held its models and is gone with it; "
              "`make web` builds it again (make deploy and make serve do, once make web has run)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(DeployConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
