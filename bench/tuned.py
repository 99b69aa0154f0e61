"""The bench keeps a tuned ONNX Runtime option only where it also wins in the bench's own process.

`make tune` chooses options in a process of its own; the bench runs beside torch's thread pool and
the other runtimes' sessions, where an option can measure differently (seen: spinning off, chosen
for fp32 at batch 1024 at 8.1 ms against 9.2 ms, then measured by the bench at 15.3 ms). So for
each batch size the bench measures, the tuned record and ORT's defaults are timed here, in
alternating rounds of the same harness, and the tuned record is kept only if it is faster round
by round (the median of the per-round ratios above 1); otherwise that batch size runs ORT's defaults.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.handoff.ort_options import DEFAULT_OPTIONS, bound_call, cpu_session, describe, options_for_batch
from pipeline.handoff.timing import interleaved, paired_ratio

ROUNDS, SECONDS = 7, 0.05  # per batch size: about 1.4 s of alternating calls and pauses
SMOKE_ROUNDS, SMOKE_SECONDS = 1, 0.001  # --bench-smoke: the mechanism, not a measurement


def confirm(model: Path, tuned: dict[str, dict], batch_sizes: tuple[int, ...], smoke: bool) -> tuple[dict, dict]:
    """(batch size -> {"options": record} for each of `batch_sizes`, batch size -> verdict): the
    record `make tune` chose for the nearest size where it beats ORT's defaults here, else the defaults."""
    rounds, seconds = (SMOKE_ROUNDS, SMOKE_SECONDS) if smoke else (ROUNDS, SECONDS)
    defaults = cpu_session(model, DEFAULT_OPTIONS)
    shape = [int(d) for d in defaults.get_inputs()[0].shape[1:]]
    kept, verdicts = {}, {}
    for size in batch_sizes:
        record = options_for_batch(tuned, size)
        if record == DEFAULT_OPTIONS:
            kept[str(size)], verdicts[str(size)] = {"options": record}, "ORT defaults (make tune kept them)"
            continue
        inputs = np.zeros((size, *shape), np.float32)  # the time of a call does not depend on the values
        calls = {"tuned": bound_call(cpu_session(model, record), inputs)[0], "defaults": bound_call(defaults, inputs)[0]}
        times = interleaved(calls, rounds, seconds)
        speedup = paired_ratio(times["defaults"], times["tuned"])  # > 1: the tuned record is faster
        wins = speedup.median > 1
        kept[str(size)] = {"options": record if wins else dict(DEFAULT_OPTIONS)}
        verdicts[str(size)] = (f"{describe(record)}: {speedup.text()} ORT defaults' speed here, "
                               + ("kept" if wins else "not kept: ORT defaults used"))
    return kept, verdicts
