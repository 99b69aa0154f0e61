"""The GPU check's summary: what a stage measured against the GPU targets, as one markdown file.

Usage: python3 bench/gpu/summary.py --artifacts DIR [--graph DIR] --bench JSON --out FILE
    --artifacts  the eager training run and its exports (train_metrics.json, parity.json)
    --graph      the CUDA-graph training run (train_metrics.json), stage 1
    --bench      pytest-benchmark's JSON of the stage
Targets (one H100/H200): the fast recipe >= 98.0% in <= 0.5 s of training (capture and warm-up apart),
CUDA parity passed with TF32 off, fp32 inference at batch 8192 >= 20 M samples/s, and the batch-1
latencies of the CUDA-graph paths. A figure the stage did not measure is "unmeasured", with why.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a file, like bench/gpu/preflight.py
from handoff.artifacts import PARITY, TRAIN_METRICS  # noqa: E402

TRAIN_SECONDS_TARGET = 0.5
ACCURACY_TARGET = 0.98
BATCH_8192_TARGET = 20e6  # samples/s


def time_to(history: list[dict], metric: str, target: float) -> float | None:
    """Training seconds until the first epoch at `target` (None: never reached)."""
    seconds = 0.0
    for epoch in history:
        seconds += epoch["seconds"]
        if epoch[metric] >= target:
            return seconds
    return None


def training_rows(label: str, metrics: dict) -> list[tuple[str, str, str, str]]:
    accuracy, seconds = metrics[metrics["accuracy_metric"]], metrics["train_seconds"]
    reached = time_to(metrics["history"], metrics["accuracy_metric"], ACCURACY_TARGET)
    where = f"{metrics['device']}, capture {metrics['capture']}, {metrics['precision']['dtype']}"
    return [
        (f"{label}: accuracy, training time ({where})", f"{accuracy:.2%} in {seconds:.3f} s (+{metrics['warmup_seconds']:.3f} s warm-up/capture)",
         f">= {ACCURACY_TARGET:.1%} in <= {TRAIN_SECONDS_TARGET} s", _verdict(accuracy >= ACCURACY_TARGET and seconds <= TRAIN_SECONDS_TARGET, metrics)),
        (f"{label}: time to {ACCURACY_TARGET:.0%}", "not reached" if reached is None else f"{reached:.3f} s", "", ""),
    ]


def _verdict(ok: bool, metrics: dict) -> str:
    if metrics["device"] != "cuda":
        return f"not a GPU figure ({metrics['device']})"
    return "met" if ok else "MISSED"


def bench_rows(bench: dict) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """The targets' rows from the bench JSON, and the whole table of what it measured."""
    rows = {(b["extra_info"].get("backend", b["extra_info"].get("recipe")), b["extra_info"]["batch_size"]): b["extra_info"]
            for b in bench["benchmarks"] if b["extra_info"]["kind"] in ("inference", "train_step")}
    table = ["| kind | backend / recipe | device | batch | p50 ms | p99 ms | samples/s |", "|---|---|---|---:|---:|---:|---:|"]
    for (name, batch), info in sorted(rows.items(), key=lambda item: (item[1]["kind"], str(item[0][0]), item[0][1])):
        latency = info["latency_ms"]
        table.append(f"| {info['kind']} | {name} | {info['device']} | {batch} | {latency['p50']:.4f} | {latency['p99']:.4f} | "
                     f"{info['samples_per_second']:,.0f} |")
    targets = []
    # (label, the row's backend name, the test id's runtime, field, target): a backend's name is not always
    # its runtime id (ort-cudagraph:fp32 records ort-cudagraph-fp32-cuda)
    wanted = [("fp32 inference, batch 8192", "eager-cuda", "eager", 8192, "samples_per_second", BATCH_8192_TARGET),
              ("eager CUDA graph, batch 1", "eager-cudagraph-cuda", "eager-cudagraph", 1, "p50", None),
              ("ORT CUDA graph fp32, batch 1", "ort-cudagraph-fp32-cuda", "ort-cudagraph:fp32", 1, "p50", None)]
    for label, backend, runtime, batch, field, target in wanted:
        info = rows.get((backend, batch))
        if info is None:
            skipped = [s["reason"] for s in bench.get("skipped", []) if s["test"].endswith(f"[{batch}-{runtime}-cuda]")]
            targets.append((label, "unmeasured" + (f": {skipped[0]}" if skipped else " in this stage"), _target(target), ""))
        elif field == "p50":
            targets.append((label, f"p50 {info['latency_ms']['p50'] * 1000:.1f} µs, p99 {info['latency_ms']['p99'] * 1000:.1f} µs", "reported", ""))
        else:
            value = info[field]
            targets.append((label, f"{value / 1e6:.2f} M samples/s", _target(target), "met" if value >= target else "MISSED"))
    return targets, table


def _target(value: float | None) -> str:
    return "" if value is None else f">= {value / 1e6:.0f} M samples/s"


def parity_row(parity: dict) -> tuple[str, str, str, str]:
    cuda = {name: b for name, b in parity["backends"].items() if b.get("device") == "cuda"}
    ran = sorted(name for name, b in cuda.items() if b["status"] == "ran")
    skipped = {name: b.get("reason", "") for name, b in cuda.items() if b["status"] != "ran"}
    measured = f"{'passed' if parity['passed'] else 'FAILED'}; CUDA backends run: {', '.join(ran) or 'none'}"
    if skipped:
        measured += "; skipped: " + "; ".join(f"{n} ({r})" for n, r in sorted(skipped.items()))
    verdict = ("met" if parity["passed"] else "MISSED") if ran else "unmeasured (no CUDA backend ran)"
    return ("parity gate, TF32 off (export.backends.disable_tf32)", measured, "passed", verdict)


def render(artifacts: Path, graph: Path | None, bench: dict) -> str:
    rows = training_rows("eager step", json.loads((artifacts / TRAIN_METRICS).read_text()))
    if graph is not None:
        rows += training_rows("CUDA-graph step", json.loads((graph / TRAIN_METRICS).read_text()))
    rows.append(parity_row(json.loads((artifacts / PARITY).read_text())))
    targets, table = bench_rows(bench)
    lines = ["| figure | measured | target | verdict |", "|---|---|---|---|", *(f"| {' | '.join(r)} |" for r in rows + targets)]
    machine = bench["machine_info"]
    gpu = machine.get("gpu") or {}
    where = f"{gpu['name']} (driver {gpu['driver']})" if gpu else f"no GPU: {machine['cpu_model']}, a dry run"
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    head = f"# GPU check on {where}\n\n{versions}\n"
    return "\n".join([head, *lines, "", "## Every row the bench measured", "", *table, ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True)
    parser.add_argument("--graph", type=Path, default=None)
    parser.add_argument("--bench", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    text = render(args.artifacts, args.graph, json.loads(args.bench.read_text()))
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
