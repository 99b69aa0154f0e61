"""parity.json -> parity.md: the tables a person reads."""

from __future__ import annotations

from typing import Any


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# Parity: {'PASSED' if report['passed'] else 'FAILED'}", "", _setup(report), ""]
    lines += _backends(report) + [""] + _pairs(report)
    if report["failures"]:
        lines += ["", "## Failed checks", ""] + [f"- {failure}" for failure in report["failures"]]
    return "\n".join(lines) + "\n"


def _setup(report: dict[str, Any]) -> str:
    tol = report["tolerances"]
    sizes = ", ".join(str(bs) for bs in report["batch_sizes"])
    inputs = " and ".join(f"{count:,} {name} inputs" for name, count in report["inputs"].items())
    return (f"Reference: `{report['reference']}`. Inputs: {inputs}, each at batch sizes {sizes}. "
            f"Tolerances: abs {tol['abs']:.0e}, rel {tol['rel']:.0e} (relative to max(|reference|, "
            f"{tol['rel_floor']:.0e})), row sums {tol['row_sum']:.0e}. Device: {report['device']}.")


def _backends(report: dict[str, Any]) -> list[str]:
    sizes = ", ".join(str(bs) for bs in report["batch_sizes"])
    lines = ["## Backends", "", f"| backend | status | {report['labelled_set']} accuracy at batch {sizes} |",
             "|---|---|---|"]
    for name, entry in report["backends"].items():
        if entry["status"] == "skipped":
            lines.append(f"| {name} | skipped: {entry['reason']} | |")
        else:
            lines.append(f"| {name} | ran | {' / '.join(f'{100 * a:.2f}%' for a in entry['accuracy'].values())} |")
    return lines


def _pairs(report: dict[str, Any]) -> list[str]:
    labelled = report["labelled_set"]
    lines = [
        "## Pairs (candidate vs reference, over every input set and batch size)", "",
        "| pair | verdict | max abs | mean abs | median abs | max rel | mean rel | median rel "
        f"| smallest passing abs / rel tol | argmax agreement ({labelled}, every batch) | worst case |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pair in report["pairs"]:
        held_out = [s for case, s in pair["by_case"].items() if case.startswith(f"{labelled}@")]
        agree = min(s["argmax_agree"] for s in held_out)
        lines.append(
            f"| {pair['candidate']} vs {pair['reference']} | {'passed' if pair['passed'] else 'FAILED'} "
            f"| {pair['max_abs']:.2e} | {pair['mean_abs']:.2e} | {pair['median_abs']:.2e} "
            f"| {pair['max_rel']:.2e} | {pair['mean_rel']:.2e} | {pair['median_rel']:.2e} "
            f"| {pair['max_abs']:.1e} / {pair['max_rel']:.1e} | {agree:,} / {held_out[0]['images']:,} "
            f"| {pair['worst_case']} |"
        )
    return lines
