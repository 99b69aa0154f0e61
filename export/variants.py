"""Make the int8 and fp16 variants of `model.onnx` and hold each to its parity gate.

Usage:
    python -m export.variants [--artifacts DIR] [--device auto|cpu|cuda] [--calibration-rows 1024]
                              [--per-channel auto|on|off] [--first-layer auto|int8|float32]
                              [--calibration-method minmax|percentile|entropy] [--reduce-range auto|on|off] [--seed 0]
                              [--data-dir DIR] [--mnist-mirror DIR] [--otto-csv FILE]
    make export                       # train -> export -> parity -> variants

Reads model.onnx (after its own parity gate passed) and the dataset's training split (calibration)
and held-out split (the gate). Writes model.int8.onnx, model.int8-dynamic.onnx, model.fp16.onnx
and variants.json (how each was made, why, and its checks against float32), recorded in
manifest.json. A deployable variant (int8, fp16) outside its tolerance fails the stage, naming the check; the
int8-dynamic baseline is marked failed instead (deploy refuses it).

--per-channel auto, --first-layer auto: the cheapest int8 layout (per-tensor, then per-channel, then
per-channel with a float32 first layer) that clears the tolerance with half its slack on training
rows the calibration did not use (choose_layout). The logits layer is always float32.
--reduce-range auto: 7-bit weights only on CPUs without VNNI/AMX (export.quantize.reduce_range_choice).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

from export import backends, quantize
from export.variant_gate import TOLERANCES, check, outputs_by_batch, stricter
from handoff import artifacts
from handoff.artifacts import REFERENCE_VARIANT, VARIANT_FILES
from handoff.atomic import write_json
from handoff.cli import run_cli
from handoff.errors import PipelineError
from handoff.manifest import record, verify
from handoff.reports import read_parity
from pipeline.config import DATA_DIR_FIELD, MNIST_MIRROR_FIELD, OTTO_CSV_FIELD
from pipeline.datasets.registry import load_dataset
from pipeline.datasets.spec import DataSource
from pipeline.placement import resolve_device

CPU_ONLY = ("int8", "int8-dynamic")
# The deployable variants: a miss fails the stage. int8-dynamic is the baseline static int8 is
# measured against: a miss marks it failed (deploy refuses it) and is printed, but does not stop.
GATED = ("int8", "fp16")  # ORT's CUDA provider has no QDQ int8 Gemm outside TensorRT
SELECTION_ROWS = 2000  # training rows, after the calibration rows, that decide --per-channel auto


@dataclass(frozen=True)
class VariantsConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder with model.onnx and parity.json"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda: cuda also checks fp32/fp16 on ORT's CUDA provider"})
    calibration_rows: int = field(default=1024, metadata={"help": "training inputs the int8 calibration sees"})
    per_channel: str = field(default="auto", metadata={"help": "auto | on | off: per-channel int8 weight scales"})
    first_layer: str = field(default="auto", metadata={"help": "auto | int8 | float32: precision of the static int8 model's layer 1"})
    reduce_range: str = field(default="auto", metadata={"help": "auto | on | off: 7-bit int8 weights (CPUs without VNNI)"})
    calibration_method: str = field(default="minmax", metadata={"help": "minmax | percentile | entropy (ORT's calibrators)"})
    seed: int = field(default=0, metadata={"help": "picks the calibration rows from the training split"})
    data_dir: str | None = field(default=None, metadata=DATA_DIR_FIELD)
    mnist_mirror: str | None = field(default=None, metadata=MNIST_MIRROR_FIELD)
    otto_csv: str | None = field(default=None, metadata=OTTO_CSV_FIELD)

    def __post_init__(self) -> None:
        choices = {"per_channel": ("auto", "on", "off"), "first_layer": ("auto", "int8", "float32"),
                   "reduce_range": ("auto", "on", "off"), "calibration_method": tuple(quantize.CALIBRATION_METHODS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise PipelineError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.calibration_rows < 1:
            raise PipelineError(f"--calibration-rows must be at least 1, got {self.calibration_rows}")


def load_gated_fp32(out: Path) -> onnx.ModelProto:
    """model.onnx, once its parity gate passed (both files as their stages recorded them)."""
    verify(out, [artifacts.ONNX, artifacts.PARITY])
    if not read_parity(out).passed:
        raise PipelineError(f"{out / artifacts.PARITY}: the float32 parity gate failed; fix it before making variants")
    return onnx.load(str(out / artifacts.ONNX))


def calibration_split(train_inputs: np.ndarray, train_labels: np.ndarray, config: VariantsConfig):
    """(calibration inputs, selection inputs, selection labels): disjoint, from one seeded permutation."""
    order = np.random.default_rng(config.seed).permutation(len(train_inputs))
    calibration, selection = order[: config.calibration_rows], order[config.calibration_rows :][:SELECTION_ROWS]
    return train_inputs[calibration], train_inputs[selection], train_labels[selection]


# --per-channel / --first-layer auto: the cheapest int8 layout, first, that clears the tolerance
# with half its slack on training rows the calibration did not see (the gate's held-out rows are
# another sample). Per-tensor scales cost least; per-channel adds a multiply per output column
# (about 7 µs per batch-1 call on MNIST, Zen 4); a float32 first layer runs its GEMM in float.
LADDER = ((False, False), (True, False), (True, True))  # (per_channel, float32 first layer)
SELECTION_SLACK = 0.5


def choose_layout(config, pre, work, input_name, calibration, selection, labels, reduce_range, classes) -> tuple[bool, bool, str]:
    wanted = {"on": (True,), "off": (False,), "auto": (False, True)}
    first = {"float32": (True,), "int8": (False,), "auto": (False, True)}
    if "auto" not in (config.per_channel, config.first_layer):
        return (wanted[config.per_channel][0], first[config.first_layer][0],
                f"asked for (--per-channel {config.per_channel} --first-layer {config.first_layer})")
    ladder = [(pc, ff) for pc, ff in LADDER if pc in wanted[config.per_channel] and ff in first[config.first_layer]]
    failures: list[str] = []
    cpu = torch.device("cpu")
    reference = outputs_by_batch(backends.onnxruntime(pre, cpu), selection, classes, failures)
    tolerance = stricter(TOLERANCES["int8"], SELECTION_SLACK)
    tried = []
    for per_channel, float_first in ladder:
        trial = work / "trial.onnx"
        quantize.int8_static(pre, trial, input_name, calibration, per_channel, reduce_range, config.calibration_method, float_first)
        outputs = outputs_by_batch(backends.onnxruntime(trial, cpu), selection, classes, failures)
        entry, missed = check("int8", outputs, reference, labels, "trial", tolerance)
        if failures:
            raise PipelineError(f"int8 layout trial: {failures[0]}")
        layout = f"{'per-channel' if per_channel else 'per-tensor'}{', float32 first layer' if float_first else ''}"
        tried.append(f"{layout}: agreement {100 * entry['agreement']:.2f}%")
        if not missed:
            return per_channel, float_first, (f"{layout}: the cheapest layout within half the tolerance's slack (agreement >= "
                                              f"{100 * tolerance.min_agreement:.2f}%) on {len(labels)} unseen training rows; "
                                              f"tried {'; '.join(tried)}")
    per_channel, float_first = ladder[-1]
    return per_channel, float_first, f"none within half the slack ({'; '.join(tried)}); the most precise layout"


def make_variants(config: VariantsConfig, out: Path, fp32: onnx.ModelProto, data) -> dict[str, dict]:
    """Write every variant file into `out` (atomically, each checked by onnx.checker); name -> how."""
    train_inputs, train_labels = data.train.inputs.numpy(), data.train.labels.numpy()
    calibration, selection, labels = calibration_split(train_inputs, train_labels, config)
    reduce_range, range_reason = quantize.reduce_range_choice(config.reduce_range)
    made = {REFERENCE_VARIANT: {"method": "torch.onnx.export(dynamo=True)", "decisions": {}}}
    with quantize.work_dir(out) as scratch:
        work = Path(scratch)
        pre = quantize.preprocess(out / artifacts.ONNX, work)
        per_channel, float_first, layout_reason = choose_layout(
            config, pre, work, data.spec.input_name, calibration, selection, labels, reduce_range, len(data.classes))
        builders = {
            "int8": lambda p: quantize.int8_static(pre, p, data.spec.input_name, calibration, per_channel, reduce_range,
                                                  config.calibration_method, float_first),
            "int8-dynamic": lambda p: quantize.int8_dynamic(pre, p, per_channel, reduce_range),
            "fp16": lambda p: quantize.fp16(pre, p),
        }
        for name, build in builders.items():
            path = work / VARIANT_FILES[name]
            settings = build(path)
            quantize.finish(path, fp32, name, settings)
            os.replace(path, out / VARIANT_FILES[name])
            decisions = {"layout": layout_reason, "reduce_range": range_reason} if name.startswith("int8") else {}
            made[name] = {**settings, "decisions": decisions}
    return made


def gate(out: Path, made: dict[str, dict], data, device) -> tuple[dict, list[str], list[str]]:
    """Each variant against float32, on ORT's CPU provider (and CUDA where asked);
    (entries, failures of the deployable variants, failures of the baseline)."""
    held_out, labels = data.held_out.inputs.numpy(), data.held_out.labels.numpy()
    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    failures: list[str] = []
    baseline_failures: list[str] = []
    entries = {name: {"file": VARIANT_FILES[name], **how, "checks": {}} for name, how in made.items()}
    for dev in devices:
        sessions = {name: backends.onnxruntime(out / VARIANT_FILES[name], dev) for name in made}
        reference_skipped = sessions[REFERENCE_VARIANT].skipped
        if reference_skipped and dev.type == "cpu":
            raise PipelineError(f"float32 on ORT's CPU provider cannot run: {reference_skipped}")
        reference = None if reference_skipped else outputs_by_batch(
            sessions[REFERENCE_VARIANT], held_out, len(data.classes), failures)
        for name, backend in sessions.items():
            if name == REFERENCE_VARIANT:
                continue
            why = _why_skipped(name, backend, dev, reference_skipped)
            if why:
                entries[name]["checks"][dev.type] = {"status": "skipped", "reason": why}
                continue
            outputs = outputs_by_batch(backend, held_out, len(data.classes), failures)
            entry, missed = check(name, outputs, reference, labels, f"{backend.name}, {data.name} {data.spec.held_out}")
            entries[name]["checks"][dev.type] = {"status": "ran", **entry}
            (failures if name in GATED else baseline_failures).extend(missed)
    for name, entry in entries.items():
        ran = [c for c in entry["checks"].values() if c["status"] == "ran"]
        entry["passed"] = name == REFERENCE_VARIANT or (bool(ran) and all(c["passed"] for c in ran))
    return entries, failures, baseline_failures


def _why_skipped(name: str, backend: backends.Backend, dev: torch.device, reference_skipped: str | None) -> str | None:
    """Why `name` is not checked on `dev`; None where it is. Without float32 there (ORT built without
    its CUDA provider, say) no variant has a reference to be checked against."""
    if reference_skipped:
        return f"float32, the reference, cannot run on {dev.type}: {reference_skipped}"
    if backend.skipped:
        return backend.skipped
    if dev.type == "cuda" and name in CPU_ONLY:
        return "ORT's CUDA provider runs QDQ int8 only through TensorRT; this is the CPU artifact"
    return None


def run(config: VariantsConfig) -> None:
    out = Path(config.artifacts)
    fp32 = load_gated_fp32(out)
    dataset = {p.key: p.value for p in fp32.metadata_props}["dataset"]
    data = load_dataset(dataset, DataSource.of(config))
    device = resolve_device(config.device)
    made = make_variants(config, out, fp32, data)
    entries, failures, baseline_failures = gate(out, made, data, device)
    report = {"passed": not failures, "failures": failures, "baseline_failures": baseline_failures,
              "reference": REFERENCE_VARIANT, "dataset": dataset,
              "held_out": data.spec.held_out, "tolerances": {k: asdict(v) for k, v in TOLERANCES.items()},
              "config": asdict(config), "variants": entries}
    write_json(out / artifacts.VARIANTS, report)
    files = [VARIANT_FILES[name] for name in made if name != REFERENCE_VARIANT] + [artifacts.VARIANTS]
    record(out, files, "python -m export.variants", variants=summary(report))
    for name, entry in entries.items():
        print(f"{name:>12}: {_line(entry)}")
    for missed in baseline_failures:
        print(f"baseline missed its tolerance (marked failed; deploy refuses it): {missed}", file=sys.stderr)
    if failures:
        raise PipelineError(f"variant gate failed: {failures[0]} ({len(failures)} failed checks; see {out / artifacts.VARIANTS})")


def summary(report: dict) -> dict:
    """What the manifest keeps: each variant's file, verdict and CPU accuracy/agreement."""
    result = {}
    for name, entry in report["variants"].items():
        cpu = entry["checks"].get("cpu", {})
        result[name] = {"file": entry["file"], "passed": entry["passed"],
                        **{k: cpu[k] for k in ("accuracy", "agreement", "max_abs") if k in cpu}}
    return result


def _line(entry: dict) -> str:
    cpu = entry["checks"].get("cpu")
    if cpu is None:
        return f"{entry['file']} (the reference)"
    return (f"{entry['file']}: accuracy {100 * cpu['accuracy']:.2f}% (fp32 {100 * cpu['reference_accuracy']:.2f}%), "
            f"agreement {100 * cpu['agreement']:.2f}%, max prob error {cpu['max_abs']:.1e}, "
            f"{'passed' if entry['passed'] else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(VariantsConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
