"""Render a pytest-benchmark JSON file as report.md (tables) and report.png (throughput plot).

Usage:
    python -m bench.report --results artifacts/bench/results.json --out artifacts/bench
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.report_inference import inference_table
from bench.report_inference import targets as inference_targets
from bench.report_training import ablation_table, rows, targets, time_to_accuracy_table
from pipeline.atomic import atomic_path
from pipeline.cli import run_cli
from pipeline.errors import PipelineError


@dataclass(frozen=True)
class ReportConfig:
    results: str = field(default="artifacts/bench/results.json", metadata={"help": "pytest-benchmark JSON"})
    out: str = field(default="artifacts/bench", metadata={"help": "folder for report.md and report.png"})


def train_step_table(results: dict) -> list[str]:
    lines = [
        "| device | recipe | batch | precision | samples/s | p50 ms | p99 ms |",
        "|---|---|---:|---|---:|---:|---:|",
    ]
    for r in sorted(rows(results, "train_step"), key=lambda r: (r["device"], r["batch_size"])):
        lines.append(
            f"| {r['device']} | {r['recipe']} | {r['batch_size']} | {r['precision']['dtype']} "
            f"| {r['samples_per_second']:,.0f} | {r['latency_ms']['p50']:.3f} | {r['latency_ms']['p99']:.3f} |"
        )
    return lines


def context_lines(results: dict) -> list[str]:
    m = results["machine_info"]
    gpu = m.get("gpu")
    smoke = any(b["extra_info"].get("smoke") for b in results["benchmarks"])
    lines = [
        f"- Run: {results['datetime']}, commit {results['commit_info'].get('id', '?')[:10]}"
        f"{' (dirty)' if results['commit_info'].get('dirty') else ''}{' — SMOKE MODE: not measurements' if smoke else ''}",
        f"- CPU: {m['cpu_model']}, {m['cpu_cores']} cores; torch threads {m['torch_threads']}, "
        f"ORT intra-op threads {m['ort_intra_op_threads']}; large fp32 GEMM on this CPU: {m['fp32_gemm_gflops']:.0f} GFLOP/s",
        f"- CPU flags: has {', '.join(m['cpu_flags']['present']) or 'none'}; lacks {', '.join(m['cpu_flags']['absent']) or 'none'}; "
        f"ATen dispatch {m['cpu_flags']['aten_capability']}; ONEDNN_MAX_CPU_ISA {m['cpu_flags']['onednn_max_cpu_isa'] or 'unset'}",
        *(f"- Precision `auto` on {device}: {p['dtype']} ({p['reason']})" for device, p in m["precision"].items()),
        f"- GPU: {gpu['name']}, driver {gpu['driver']}" if gpu else "- GPU: none",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        f"- ORT providers available: {', '.join(m['ort_available_providers'])}; untuned session options: {m['ort_session_options']}",
        *(f"- ORT options chosen by `make tune` for {variant}: "
          + "; ".join(f"batch {bs}: {choice}" for bs, choice in sorted(sizes.items(), key=lambda kv: int(kv[0])))
          for variant, sizes in (m.get("ort_tuning") or {}).items()),
    ]
    return lines


def render_markdown(results: dict) -> str:
    dataset = results["machine_info"].get("dataset", "mnist")
    lines = ["# Benchmarks", "", *context_lines(results), ""]
    if dataset == "mnist":  # the training targets, ablation and the lecture's script are MNIST's
        lines += ["## Targets (fast recipe)", "", *targets(results)]
        lines += ["## Time to accuracy (training seconds; warm-up and evaluation excluded)", ""]
        lines += time_to_accuracy_table(results)
        lines += ["", "## Ablation (fast recipe, one change at a time, same seed)", ""]
        lines += ablation_table(results)
        lines += [""]
    lines += [f"## Training step ({dataset}: forward + backward + optimizer step)", ""]
    lines += train_step_table(results)
    held_out = "test images" if dataset == "mnist" else "held-out rows"
    lines += ["", "## Inference targets (CPU: the best ONNX artifact against eager PyTorch and the peers)", ""]
    lines += inference_targets(results)
    lines += ["", f"## Inference (softmax head, real {dataset} {held_out})", ""]
    lines += inference_table(results)
    lines += ["", "Samples/s from the median call (batch / p50)."]
    skipped = results.get("skipped", [])
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- `{s['test']}`: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"


def render_plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = rows(results, "inference")
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for backend in sorted({r["backend"] for r in found}):
        points = sorted((r["batch_size"], r["samples_per_second"]) for r in found if r["backend"] == backend)
        ax.plot(*zip(*points), marker="o", label=backend)
    gemm = results["machine_info"]["fp32_gemm_gflops"] * 1e9 / (2 * found[0]["forward_macs"])  # in images/s
    ax.axhline(gemm, color="grey", linestyle="--", label="fp32 2048³ GEMM rate on this CPU")
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples / s (median call)",
           title="Inference throughput by runtime, variant and device")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def run(config: ReportConfig) -> None:
    try:
        results = json.loads(Path(config.results).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{config.results}: not a readable pytest-benchmark JSON file ({err})") from err
    out = Path(config.out)
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(render_markdown(results))
    render_plot(results, out / "report.png")
    print(f"{out / 'report.md'}, {out / 'report.png'}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(ReportConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
