"""The inference half of report.md: every runtime, variant and peer, with the distance to the
hardware (effective GOP/s against this CPU's fp32 GEMM rate) and the targets of the inference
work: the best ONNX artifact against eager PyTorch and against every peer, at batch 1 and 1024."""

from __future__ import annotations

from typing import Any

from bench.report_training import rows
from pipeline.provenance import INT8_DOT_FLAGS

# Targets (the report checks them; tests never check speed). Batch 1: p50 latency at least 5x
# lower than eager's. Batch 1024: throughput over eager, higher where the CPU has int8 dot products.
BATCH1_MIN_SPEEDUP = 5.0
LARGE_BATCH = 1024
LARGE_MIN_SPEEDUP = {"vnni": 2.5, "none": 1.5}
OURS = ("ort-",)  # our ONNX artifacts; compiled-* and openvino-* are the peers
PEERS = ("compiled-", "openvino-")


def _gops(r: dict) -> float:
    return 2 * r["forward_macs"] * r["samples_per_second"] / 1e9


def inference_table(results: dict) -> list[str]:
    found = rows(results, "inference")
    gemm = results["machine_info"]["fp32_gemm_gflops"]
    eager = {(r["device"], r["batch_size"]): r for r in found if r["backend"].startswith("eager-") and r["backend"].count("-") == 1}
    lines = [
        "| device | backend | variant | batch | samples/s | p50 µs | p99 µs | GOP/s | of fp32 GEMM | throughput vs eager "
        "| p50 vs eager | accuracy | agreement with fp32 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(found, key=lambda r: (r["device"], r["batch_size"], -r["samples_per_second"])):
        base = eager.get((r["device"], r["batch_size"]))
        speedup = f"{r['samples_per_second'] / base['samples_per_second']:.2f}x" if base else "n/a"
        latency = f"{base['latency_ms']['p50'] / r['latency_ms']['p50']:.2f}x" if base else "n/a"
        lines.append(
            f"| {r['device']} | {r['backend']} | {r.get('variant', 'fp32')} | {r['batch_size']} | {r['samples_per_second']:,.0f} "
            f"| {1e3 * r['latency_ms']['p50']:,.1f} | {1e3 * r['latency_ms']['p99']:,.1f} | {_gops(r):.1f} "
            f"| {100 * _gops(r) / gemm:.0f}% | {speedup} | {latency} | {_pct(r.get('accuracy'))} | {_pct(r.get('agreement'))} |"
        )
    lines += ["", f"GOP/s counts the forward pass's multiply-adds twice, whatever the precision; \"of fp32 GEMM\" divides "
              f"it by this CPU's measured fp32 GEMM rate ({gemm:.0f} GFLOP/s), so int8 can pass 100%. Accuracy and "
              "agreement: all held-out rows, one call, against float32 ONNX Runtime on the CPU."]
    return lines


def targets(results: dict) -> list[str]:
    """The best ONNX artifact against eager and each peer on the CPU, with the targets' verdicts."""
    found = [r for r in rows(results, "inference") if r["device"] == "cpu"]
    flags = results["machine_info"]["cpu_flags"]["present"]
    has_dot = [f for f in flags if f in INT8_DOT_FLAGS]
    need_large = LARGE_MIN_SPEEDUP["vnni" if has_dot else "none"]
    lines = []
    for batch, metric, need in ((1, "p50", BATCH1_MIN_SPEEDUP), (LARGE_BATCH, "throughput", need_large)):
        at = [r for r in found if r["batch_size"] == batch]
        ours = [r for r in at if r["backend"].startswith(OURS)]
        eager = next((r for r in at if r["backend"] == "eager-cpu"), None)
        if not ours or eager is None:
            lines.append(f"- Batch {batch}: not measured in this run.")
            continue
        best = min(ours, key=lambda r: r["latency_ms"]["p50"])
        ratio = _ratio(best, eager, metric)
        verdict = "met" if ratio >= need else "MISSED"
        lines.append(f"- Batch {batch}: best artifact `{best['backend']}` ({best.get('variant', 'fp32')}), {metric} "
                     f"{ratio:.2f}x eager's (target >= {need:g}x{' with ' + ', '.join(has_dot) if batch > 1 and has_dot else ''}): {verdict}.")
        for peer in (r for r in at if r["backend"].startswith(PEERS)):
            peer_ratio = _ratio(best, peer, metric)
            lines.append(f"  - vs peer `{peer['backend']}`: {peer_ratio:.2f}x"
                         f"{'' if peer_ratio >= 1 else ' — the peer is FASTER here'}")
    return lines


def _ratio(ours: dict, other: dict, metric: str) -> float:
    if metric == "p50":
        return other["latency_ms"]["p50"] / ours["latency_ms"]["p50"]
    return ours["samples_per_second"] / other["samples_per_second"]


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
