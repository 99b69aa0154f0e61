"""Choose ONNX Runtime session options by measurement, for each variant and batch size.

Usage:
    python -m export.tune [--artifacts DIR] [--variants fp32,int8] [--batch-sizes 1,64,1024]
                          [--seconds 0.1] [--rounds 3] [--min-gain 0.05] [--save-optimized on|off]
    make tune

Starting from ORT's defaults, each option of pipeline.ort_options.SEARCH_SPACE is visited in turn
(threads, spinning, graph optimisation level, memory pattern, execution mode); every value is timed
with the same bound call the bench uses, `rounds` times interleaved with the current choice, scored
by the best round's median latency; a change is kept only if it is at least `min_gain` faster than
the current choice timed beside it, so noise cannot move the choice away from the defaults. Writes ort_tuning.json (choices, every candidate's timing, the CPU
they came from), recorded in manifest.json; the bench, the predictor and the server read it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.variants import VARIANT_FILES
from pipeline.atomic import atomic_path, write_json
from pipeline.cli import run_cli
from pipeline.data import dataset_spec
from pipeline.errors import PipelineError
from pipeline.manifest import record, verify
from pipeline.ort_options import DEFAULT_OPTIONS, SEARCH_SPACE, bound_call, describe, save_optimized, session_options
from pipeline.provenance import cpu_flags, cpu_model

WARMUP_CALLS = 5
SETTLE_S = 0.02  # pause between candidates: the previous session's spinning threads go idle


@dataclass(frozen=True)
class TuneConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder with the ONNX variants (make export)"})
    variants: str = field(default="fp32,int8", metadata={"help": "comma-separated: the CPU deployment variants"})
    batch_sizes: str = field(default="1,64,1024", metadata={"help": "comma-separated batch sizes to tune for"})
    seconds: float = field(default=0.1, metadata={"help": "timed work per candidate per round"})
    rounds: int = field(default=3, metadata={"help": "interleaved rounds; a candidate scores its best round's median"})
    min_gain: float = field(default=0.05, metadata={"help": "keep a change only if this much faster (0.05 = 5%)"})
    save_optimized: str = field(default="off", metadata={"help": "on: also write each variant's optimised graph "
                                                                 "(model.<variant>.optimized.onnx) for the largest batch size"})


def median_latency_s(session: ort.InferenceSession, inputs: np.ndarray, seconds: float) -> float:
    call, _ = bound_call(session, inputs)
    for _ in range(WARMUP_CALLS):
        call()
    times, deadline = [], time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def score(path: Path, candidates: list[dict], inputs: np.ndarray, config: TuneConfig) -> list[float]:
    """Best-round median latency (s) of each candidate record, rounds interleaved across candidates."""
    sessions = [ort.InferenceSession(str(path), session_options(c), providers=["CPUExecutionProvider"])
                for c in candidates]
    best = [float("inf")] * len(candidates)
    for _ in range(config.rounds):
        for i, session in enumerate(sessions):
            time.sleep(SETTLE_S)
            best[i] = min(best[i], median_latency_s(session, inputs, config.seconds))
    return best


def tune(path: Path, inputs: np.ndarray, config: TuneConfig) -> dict:
    """Coordinate search from ORT's defaults; the choice, its latency and every candidate's. The
    current choice is timed again beside each option's alternatives, in the same rounds, so a change
    is judged against a reference measured under the same load."""
    current = dict(DEFAULT_OPTIONS)
    timed, current_s, default_s = [], float("inf"), None
    for option, values in SEARCH_SPACE.items():
        candidates = [current] + [{**current, option: v} for v in values if v != current[option]]
        reference_s, *others = score(path, candidates, inputs, config)
        default_s = default_s if default_s is not None else reference_s
        best_s, best = reference_s, current
        for candidate, seconds in zip(candidates[1:], others, strict=True):
            timed.append({"options": describe(candidate), "p50_us": 1e6 * seconds, "reference_p50_us": 1e6 * reference_s})
            if seconds < best_s and seconds < reference_s * (1 - config.min_gain):
                best_s, best = seconds, candidate
        current, current_s = best, best_s
    return {"options": current, "summary": describe(current), "p50_us": 1e6 * current_s,
            "default_p50_us": 1e6 * default_s, "candidates": timed}


def run(config: TuneConfig) -> None:
    out = Path(config.artifacts)
    variants = [v.strip() for v in config.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANT_FILES]
    if unknown:
        raise PipelineError(f"--variants: unknown {unknown}; known: {', '.join(VARIANT_FILES)}")
    files = [VARIANT_FILES[v] for v in variants]
    verify(out, files + ["variants.json"])
    spec = dataset_spec(json.loads((out / "variants.json").read_text())["dataset"])
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
    written = ["ort_tuning.json"]
    if config.save_optimized == "on":
        for variant, entry in result["variants"].items():
            largest = entry["batch_sizes"][str(max(sizes))]["options"]
            entry["optimized_file"] = f"{Path(entry['file']).stem}.optimized.onnx"
            with atomic_path(out / entry["optimized_file"]) as tmp:
                save_optimized(str(out / entry["file"]), str(tmp), largest)
            written.append(entry["optimized_file"])
    write_json(out / "ort_tuning.json", result)
    record(out, written, "python -m export.tune", ort_tuning=options_table(result))


def options_table(tuning: dict) -> dict[str, dict[str, dict]]:
    """variant -> batch size -> chosen options: what the manifest keeps."""
    return {v: {bs: t["options"] for bs, t in entry["batch_sizes"].items()} for v, entry in tuning["variants"].items()}


def main(argv: list[str] | None = None) -> int:
    return run_cli(TuneConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
