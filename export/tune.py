"""Choose ONNX Runtime session options by measurement, for each variant and batch size.

Usage:
    python -m export.tune [--artifacts DIR] [--variants fp32,int8] [--batch-sizes 1,64,1024]
                          [--seconds 0.1] [--rounds 3] [--min-gain 0.05] [--save-optimized on|off]
    make tune

Starting from ORT's defaults, each option of handoff.ort_options.SEARCH_SPACE is visited
in turn (threads, spinning, graph optimisation level, memory pattern, execution mode); the current
choice and every alternative value are timed with the same bound call the bench uses, in alternating
rounds (handoff.timing, the bench's own harness), and an alternative is kept only if its
fastest round is at least `min_gain` faster than the current choice's, so noise cannot move the
choice away from the defaults. Writes ort_tuning.json (choices, every candidate's timing, the CPU
they came from), recorded in manifest.json; the bench, the predictor and the server read it, and
the bench's targets count a choice only where it also beats ORT's defaults there.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from handoff import artifacts
from handoff.artifacts import VARIANT_FILES
from handoff.atomic import atomic_path, write_json
from handoff.cli import run_cli
from handoff.cpu import cpu_flags, cpu_model
from handoff.errors import PipelineError
from handoff.manifest import record, verify
from handoff.ort_options import DEFAULT_OPTIONS, SEARCH_SPACE, bound_call, cpu_session, describe, save_optimized
from handoff.reports import read_variants
from handoff.timing import interleaved, paired_ratio
from pipeline.datasets.registry import dataset_spec


@dataclass(frozen=True)
class TuneConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder with the ONNX variants (make export)"})
    variants: str = field(default="fp32,int8", metadata={"help": "comma-separated: the CPU deployment variants"})
    batch_sizes: str = field(default="1,64,1024", metadata={"help": "comma-separated batch sizes to tune for"})
    seconds: float = field(default=0.1, metadata={"help": "timed work per candidate per round"})
    rounds: int = field(default=3, metadata={"help": "interleaved rounds; each candidate is judged by its fastest round"})
    min_gain: float = field(default=0.05, metadata={"help": "keep a change only if this much faster (0.05 = 5%)"})
    save_optimized: str = field(default="off", metadata={"help": "on: also write each variant's optimised graph "
                                                                 "(model.<variant>.optimized.onnx) for the largest batch size"})


def score(path: Path, candidates: list[dict], inputs: np.ndarray, config: TuneConfig) -> list[list[float]]:
    """Each candidate record's median seconds per call, round by round, the rounds interleaved."""
    calls = {str(i): bound_call(cpu_session(path, c), inputs)[0] for i, c in enumerate(candidates)}
    times = interleaved(calls, config.rounds, config.seconds)
    return [times[str(i)] for i in range(len(candidates))]


def tune(path: Path, inputs: np.ndarray, config: TuneConfig) -> dict:
    """Coordinate search from ORT's defaults; the choice, its latency and every candidate's. The
    current choice is timed again beside each option's alternatives, in the same rounds, so a change
    is judged against a reference measured under the same load."""
    current, current_s, default_s, timed = dict(DEFAULT_OPTIONS), None, None, []
    needed = 1 / (1 - config.min_gain)  # the speedup over the current choice a change must show
    for option, values in SEARCH_SPACE.items():
        candidates = [current] + [{**current, option: v} for v in values if v != current[option]]
        reference, *others = score(path, candidates, inputs, config)
        default_s = default_s or min(reference)
        best, best_speedup, current_s = current, needed, min(reference)
        for candidate, rounds in zip(candidates[1:], others, strict=True):
            speedup = paired_ratio(reference, rounds)  # the current choice's time over the candidate's
            timed.append({"options": describe(candidate), "p50_us": 1e6 * min(rounds),
                          "reference_p50_us": 1e6 * min(reference), "speedup": speedup.as_dict()})
            if speedup.value >= best_speedup:
                best, best_speedup, current_s = candidate, speedup.value, min(rounds)
        current = best
    return {"options": current, "summary": describe(current), "p50_us": 1e6 * current_s,
            "default_p50_us": 1e6 * default_s, "candidates": timed}


def run(config: TuneConfig) -> None:
    out = Path(config.artifacts)
    variants = [v.strip() for v in config.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANT_FILES]
    if unknown:
        raise PipelineError(f"--variants: unknown {unknown}; known: {', '.join(VARIANT_FILES)}")
    files = [VARIANT_FILES[v] for v in variants]
    verify(out, files + [artifacts.VARIANTS])
    spec = dataset_spec(read_variants(out).dataset)
    sizes = [int(b) for b in config.batch_sizes.split(",")]
    result = {"method": __doc__.split("\n\n")[2].replace("\n", " ").strip(), "config": asdict(config),
              "cpu": {"model": cpu_model(), "cores": os.cpu_count(), "flags": cpu_flags()["present"]},
              "onnxruntime": ort.__version__, "variants": {}}
    for variant, file in zip(variants, files, strict=True):
        per_batch = {}
        for size in sizes:
            inputs = np.ascontiguousarray(spec.random_inputs(size, 0))  # timing does not depend on the values
            per_batch[str(size)] = tune(out / file, inputs, config)
            chosen = per_batch[str(size)]
            print(f"{variant:>5} batch {size:>5}: {chosen['summary']}: p50 {chosen['p50_us']:.1f} µs "
                  f"(ORT defaults {chosen['default_p50_us']:.1f} µs)")
        result["variants"][variant] = {"file": file, "batch_sizes": per_batch}
    written = [artifacts.ORT_TUNING]
    if config.save_optimized == "on":
        for variant, entry in result["variants"].items():
            largest = entry["batch_sizes"][str(max(sizes))]["options"]
            entry["optimized_file"] = artifacts.optimized(entry["file"])
            with atomic_path(out / entry["optimized_file"]) as tmp:
                save_optimized(str(out / entry["file"]), str(tmp), largest)
            written.append(entry["optimized_file"])
    write_json(out / artifacts.ORT_TUNING, result)
    record(out, written, "python -m export.tune", ort_tuning=options_table(result))


def options_table(tuning: dict) -> dict[str, dict[str, dict]]:
    """variant -> batch size -> chosen options: what the manifest keeps."""
    return {v: {bs: t["options"] for bs, t in entry["batch_sizes"].items()} for v, entry in tuning["variants"].items()}


def main(argv: list[str] | None = None) -> int:
    return run_cli(TuneConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
