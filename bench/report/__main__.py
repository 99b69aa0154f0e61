"""Render the bench's pytest-benchmark JSON as report.md (tables) and report.png (throughput plot).

Usage:
    python -m bench.report [--results artifacts/bench/results.json] [--study artifacts/bench/study.json]
                           [--out artifacts/bench]
    make bench            # results.json (`make bench`), then this
    make bench-study      # study.json (`make bench-study`), then this: the study's rows join the same report

--study defaults to study.json beside --results when there is one; either file may be missing,
not both. The C++ loader's run (cpp.json, `make cpp`) beside --results joins the inference targets.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.report.inference import cpp_lines, inference_table
from bench.report.inference import targets as inference_targets
from bench.report.training import ablation_table, recipe_search_table, rows, targets, time_to_accuracy_table
from handoff import artifacts
from handoff.atomic import atomic_path
from handoff.cli import run_cli
from handoff.errors import PipelineError

STUDY = Path(artifacts.BENCH_STUDY).name
# machine_info that must match for `make bench-study`'s rows to share a table with `make bench`'s
CONTEXT_KEYS = ("cpu_model", "cpu_cores", "cpu_flags", "precision", "torch_threads", "versions", "gpu")


@dataclass(frozen=True)
class ReportConfig:
    results: str = field(default=f"artifacts/{artifacts.BENCH_RESULTS}", metadata={"help": "pytest-benchmark JSON of `make bench`"})
    study: str = field(default="", metadata={"help": f"pytest-benchmark JSON of `make bench-study` (default: {STUDY} beside --results)"})
    out: str = field(default=f"artifacts/{artifacts.BENCH}", metadata={"help": "folder for report.md and report.png"})


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
        *([f"- **The study's rows ({STUDY}) were measured under other conditions**: its {', '.join(results['study_differs'])} "
           "differ from this run's; re-run `make bench-study`"] if results.get("study_differs") else []),
        f"- CPU: {m['cpu_model']}, {m['cpu_cores']} cores; torch threads {m['torch_threads']}, "
        f"ORT intra-op threads {m['ort_intra_op_threads']}; large fp32 GEMM on this CPU: {m['fp32_gemm_gflops']:.0f} GFLOP/s",
        f"- CPU flags: has {', '.join(m['cpu_flags']['present']) or 'none'}; lacks {', '.join(m['cpu_flags']['absent']) or 'none'}; "
        f"ATen dispatch {m['cpu_flags']['aten_capability']}; ONEDNN_MAX_CPU_ISA {m['cpu_flags']['onednn_max_cpu_isa'] or 'unset'}",
        *(f"- Precision `auto` on {device}: {p['dtype']} ({p['reason']})" for device, p in m["precision"].items()),
        f"- GPU: {gpu['name']}, driver {gpu['driver']}" if gpu else "- GPU: none",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        _providers_line(m),
        *([_aoti_line(m["aoti"])] if m.get("aoti") else []),
        *(f"- ORT options chosen by `make tune` for {variant}: "
          + "; ".join(f"batch {bs}: {choice}" for bs, choice in sorted(sizes.items(), key=lambda kv: int(kv[0])))
          for variant, sizes in (m.get("ort_tuning") or {}).items()),
    ]
    return lines


def _aoti_line(aoti: dict) -> str:
    """The AOTInductor package as `make export` built it, and its cold starts in fresh processes."""
    cold = "; ".join(f"{way} loader {c['total']:.2f} s (import torch {c['import_torch']:.2f} s, load {c['load']:.3f} s, "
                     f"first call {1e3 * c['first_call']:.1f} ms)" for way, c in aoti["cold_start"].items())
    models = ", ".join(f"`{name}` for {batches} ({_options(aoti['inductor_configs'][name])})"
                       for name, batches in aoti["models"].items())
    return (f"- AOTInductor package: {models}; compiled in {aoti['seconds']:.0f} s ({aoti['cpu_isa']}); "
            f"cold start in a fresh process: {cold}")


def _options(configs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in configs.items()) or "Inductor's defaults"


def _providers_line(machine: dict) -> str:
    """The ORT providers that load here; those the wheel offers but that do not load, apart."""
    loading = machine.get("ort_loading_providers", machine["ort_available_providers"])
    idle = [p for p in machine["ort_available_providers"] if p not in loading]
    return (f"- ORT providers that load here: {', '.join(loading)}"
            + (f" (the wheel also offers {', '.join(idle)}, which need a GPU)" if idle else "")
            + f"; untuned session options: {machine['ort_session_options']}")


def skipped_lines(skipped: list[dict[str, str]]) -> list[str]:
    """One line per reason: a reason shared by several cases (every GPU case on a machine without
    one) is one line with their count, not one line each."""
    by_reason: dict[str, list[str]] = {}
    for case in skipped:
        by_reason.setdefault(case["reason"], []).append(case["test"])
    lines = []
    for reason, tests in by_reason.items():
        if len(tests) == 1:
            lines.append(f"- `{tests[0]}`: {reason}")
        else:
            lines.append(f"- {len(tests)} cases: {reason} (e.g. `{tests[0]}`)")
    return lines


def render_markdown(results: dict) -> str:
    dataset = results["machine_info"].get("dataset", "mnist")
    study = "`make bench-study`" if results.get("studied") else "`make bench-study` (not run: no study.json)"
    lines = ["# Benchmarks", "", *context_lines(results), ""]
    if dataset == "mnist":  # the training targets, ablation and the lecture's script are MNIST's
        lines += [f"## Targets (fast recipe; `make bench`, more seeds and the lecture's script from {study})", ""]
        lines += targets(results)
        lines += [f"## Time to accuracy (training seconds; warm-up and evaluation excluded; seed 0 of each recipe from "
                  f"`make bench`, seeds 1 and 2 from {study})", ""]
        lines += time_to_accuracy_table(results)
        lines += ["", f"## Ablation (fast recipe, one change at a time, same seed; {study})", ""]
        lines += ablation_table(results)
        lines += ["", f"## Recipe search (two epochs, judged on a validation split; {study})", ""]
        lines += recipe_search_table(results)
        lines += [""]
    lines += [f"## Training step ({dataset}: forward + backward + optimizer step; `make bench`)", ""]
    lines += train_step_table(results)
    held_out = "test images" if dataset == "mnist" else "held-out rows"
    lines += ["", "## Inference targets (CPU: the best ONNX artifact against eager PyTorch and the peers; `make bench`)", ""]
    lines += inference_targets(results)
    lines += cpp_lines(results)
    lines += ["", f"## Inference (softmax head, real {dataset} {held_out}; `make bench`)", ""]
    lines += inference_table(results)
    lines += ["", "Samples/s from the median call (batch / p50)."]
    skipped = results.get("skipped", [])
    if skipped:
        lines += ["", "## Skipped", ""] + skipped_lines(skipped)
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
    if found:
        gemm = results["machine_info"]["fp32_gemm_gflops"] * 1e9 / (2 * found[0]["forward_macs"])  # in images/s
        ax.axhline(gemm, color="grey", linestyle="--", label="fp32 2048³ GEMM rate on this CPU")
    else:
        ax.text(0.5, 0.5, "no inference rows: run `make bench`", ha="center", transform=ax.transAxes)
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="samples / s (median call)",
           title="Inference throughput by runtime, variant and device")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def load(config: ReportConfig) -> dict:
    """`make bench`'s results with `make bench-study`'s benchmarks and skips added (either may be missing)."""
    results_path = Path(config.results)
    study_path = Path(config.study) if config.study else results_path.with_name(STUDY)
    found = {path: _read(path) for path in (results_path, study_path) if path.is_file() or path == Path(config.study)}
    if not found:
        raise PipelineError(f"{results_path}: not found; run `make bench` (or `make bench-study`) first")
    base = found.get(results_path) or found[study_path]
    merged = {**base, "benchmarks": [], "skipped": [], "studied": study_path in found, "study_differs": []}
    cpp = results_path.with_name(Path(artifacts.CPP_RESULTS).name)
    merged["cpp"] = _read(cpp) if cpp.is_file() else None
    for part in found.values():
        merged["benchmarks"] += part["benchmarks"]
        merged["skipped"] += part.get("skipped", [])
    if len(found) == 2:  # a study from another machine or setting would mix two contexts in one table
        study_info = found[study_path]["machine_info"]
        merged["study_differs"] = [key for key in CONTEXT_KEYS if study_info.get(key) != base["machine_info"].get(key)]
    return merged


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path}: not a readable JSON file ({err}); run the make target that writes it again") from err


def run(config: ReportConfig) -> None:
    results = load(config)
    out = Path(config.out)
    report, plot = out / Path(artifacts.BENCH_REPORT).name, out / Path(artifacts.BENCH_PLOT).name
    with atomic_path(report) as tmp:
        tmp.write_text(render_markdown(results))
    render_plot(results, plot)
    print(f"{report}, {plot}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(ReportConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
