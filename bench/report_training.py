"""The training half of report.md: time to accuracy with the compute floor, the targets, the
lecture's own script, and the ablation table. Each function takes the pytest-benchmark JSON."""

from __future__ import annotations

import math
import statistics
from typing import Any

# Targets the fast recipe is held to on every machine (tests do not check speed; the report does).
MIN_ACCURACY, MIN_MEAN_ACCURACY = 0.978, 0.980
MIN_SPEEDUP = 10.0
MAX_FLOOR_RATIO = 1.5


def rows(results: dict, kind: str) -> list[dict[str, Any]]:
    return [b["extra_info"] for b in results["benchmarks"] if b["extra_info"].get("kind") == kind]


def _reached(entry: dict) -> str:
    return "never" if entry["seconds"] is None else f"{entry['seconds']:.2f} s (epoch {entry['epoch']})"


def time_to_accuracy_table(results: dict) -> list[str]:
    lines = [
        "| device | recipe | seed | capture | precision | epochs | final accuracy | to 97% | to 98% | training s "
        "| warm-up s | GEMM GFLOP/s | floor s | x floor |",
        "|---|---|---:|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    ordered = sorted(rows(results, "time_to_accuracy"), key=lambda r: (r["device"], r["recipe"], r["capture"], r["seed"]))
    for r in ordered:
        lines.append(
            f"| {r['device']} | {r['recipe']} | {r['seed']} | {r['capture']} | {r['precision']['dtype']} | {r['epochs']:g} "
            f"| {100 * r['final_test_accuracy']:.2f}% | {_reached(r['time_to']['0.97'])} "
            f"| {_reached(r['time_to']['0.98'])} | {r['train_seconds']:.2f} | {r['warmup_seconds']:.2f} "
            f"| {r['gemm_gflops']:,.0f} | {r['floor_seconds']:.3f} | {r['floor_ratio']:.2f} |"
        )
    lines += ["", "Floor: 6 x forward multiply-adds x samples trained, at this machine's GEMM rate in the run's "
              "precision (F.linear 2048³; the median of the products timed for a second before and after the run)."]
    return lines


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT MET**"


def targets(results: dict) -> list[str]:
    """The fast recipe against its targets, per device; medians over the fast recipe's seeds."""
    lines = []
    lecture = {r["device"]: r for r in rows(results, "lecture_script")}
    runs = rows(results, "time_to_accuracy")
    for device in sorted({r["device"] for r in runs}):
        fast = [r for r in runs if r["device"] == device and r["recipe"] == "fast" and r["capture"] == "off"]
        seed = [r for r in runs if r["device"] == device and r["recipe"] == "seed"]
        if not fast:
            continue
        accuracies = [r["final_test_accuracy"] for r in fast]
        lines += [f"**{device}**, fast recipe in {fast[0]['precision']['dtype']} ({fast[0]['precision']['reason']}):", ""]
        lines.append(
            f"- accuracy over {len(fast)} seeds: {', '.join(f'{100 * a:.2f}%' for a in accuracies)}; mean "
            f"{100 * statistics.mean(accuracies):.2f}% (each >= {100 * MIN_ACCURACY:.1f}%, mean >= "
            f"{100 * MIN_MEAN_ACCURACY:.1f}%): {_verdict(min(accuracies) >= MIN_ACCURACY and statistics.mean(accuracies) >= MIN_MEAN_ACCURACY)}"
        )
        train_s = statistics.median(r["train_seconds"] for r in fast)
        ratio = statistics.median(r["floor_ratio"] for r in fast)
        lines.append(f"- training {train_s:.2f} s (median), {ratio:.2f}x the compute floor "
                     f"(<= {MAX_FLOOR_RATIO}x): {_verdict(ratio <= MAX_FLOOR_RATIO)}")
        # Median over the seeds, a seed that never got there counting as infinitely slow.
        to_98 = statistics.median(r["time_to"]["0.98"]["seconds"] or math.inf for r in fast)
        missed = [r["seed"] for r in fast if r["time_to"]["0.98"]["seconds"] is None]
        note = f"; seed {', '.join(map(str, missed))} never reached 98%" if missed else ""
        seed_to_97 = seed[0]["time_to"]["0.97"]["seconds"] if seed else None
        if seed_to_97 is not None and math.isfinite(to_98):
            speedup = seed_to_97 / to_98
            lines.append(f"- time to 98% {to_98:.2f} s (median of {len(fast)} seeds{note}) vs the seed recipe's time "
                         f"to 97% {seed_to_97:.2f} s: {speedup:.1f}x (>= {MIN_SPEEDUP:.0f}x): {_verdict(speedup >= MIN_SPEEDUP)}")
        else:
            lines.append(f"- time to 98%: {', '.join(_reached(r['time_to']['0.98']) for r in fast)}; seed recipe to 97%: "
                         f"{_reached(seed[0]['time_to']['0.97']) if seed else 'not run'}: **NOT MET**")
        if device in lecture:
            script = lecture[device]
            speedup = script["train_seconds"] / train_s
            lines.append(f"- the lecture's script trained {script['epochs']} epochs in {script['train_seconds']:.1f} s "
                         f"to {100 * script['final_test_accuracy']:.2f}%: fast is {speedup:.1f}x shorter "
                         f"(>= {MIN_SPEEDUP:.0f}x): {_verdict(speedup >= MIN_SPEEDUP)}")
        lines.append("")
    return lines


def ablation_table(results: dict) -> list[str]:
    found = rows(results, "ablation")
    if not found:
        return ["(not run)"]
    base = next((r for r in found if r["variant"] == "fast"), None)
    lines = [
        "| variant | change | precision | threads | test accuracy | training s | samples/s | time vs fast |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in found:
        relative = f"{r['train_seconds'] / base['train_seconds']:.2f}x" if base else "n/a"
        lines.append(
            f"| {r['variant']} | {r['change']} | {r['precision']['dtype']} | {r['torch_threads']} "
            f"| {100 * r['final_test_accuracy']:.2f}% | {r['train_seconds']:.2f} | {r['samples_per_second']:,.0f} "
            f"| {relative} |"
        )
    return lines
