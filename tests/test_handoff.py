"""The hand-off package's own pieces, each against a hand computation: the alternating-rounds
timing harness, the typed report readers, and the import closure the Makefile depends on."""

from __future__ import annotations

import json

import pytest

from conftest import REPO
from handoff import artifacts, timing
from handoff.digest import sha256_file
from handoff.errors import PipelineError
from handoff.reports import read_export, read_parity, read_train, read_tuning, read_variants
from tools.stage_sources import closure, imports


def test_a_ratio_compares_each_sides_fastest_round():
    # A busy spell in rounds 2 and 3 slows the numerator more: round by round 2, 3 and 4; the
    # fastest rounds (4 and 2) give 2, the ratio of the totals (30 / 9.25) would give 3.24.
    ratio = timing.paired_ratio([4.0, 9.0, 17.0], [2.0, 3.0, 4.25])
    assert (ratio.value, ratio.low, ratio.high, ratio.rounds) == (2.0, 2.0, 4.0, 3)
    assert ratio.text() == "2.00x (round by round 2.00-4.00x)"


def test_interleaved_times_every_call_each_round_in_a_rotating_order(monkeypatch):
    clock = iter(range(10_000))  # a fake perf_counter: every call to it advances one second
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(clock))
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    medians = timing.interleaved(calls, rounds=3, seconds=0, settle_s=0)
    warm = timing.WARMUP_CALLS * 3
    firsts = [order[warm + r * 3 * timing.MIN_CALLS] for r in range(3)]
    assert firsts == ["a", "b", "c"]  # round r starts with the r-th call
    assert {name: len(rounds) for name, rounds in medians.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(m == 1 for rounds in medians.values() for m in rounds)  # each call took one fake second


def test_reports_read_what_the_stages_wrote(exported):
    raw = json.loads((exported / artifacts.TRAIN_METRICS).read_text())
    train = read_train(exported)
    assert (train.dataset, train.held_out, train.accuracy) == ("mnist", "test", raw["test_accuracy"])
    assert train.metrics == {"test_accuracy": raw["test_accuracy"], "test_loss": raw["test_loss"]}
    export = read_export(exported)
    assert export.torch_files == [artifacts.TORCHSCRIPT, artifacts.EXPORTED_PROGRAM, artifacts.AOTI_PACKAGE]
    assert export.torchscript_missing is None and export.source_sha256 == sha256_file(exported / artifacts.MODEL)
    parity = read_parity(exported)
    assert parity.passed and {p.candidate for p in parity.pairs} == {"torchscript-cpu", "exported-cpu", "aoti-cpu", "ort-cpu"}
    assert all(p.agreeing == p.rows == 4 * 10_000 for p in parity.pairs)  # every held-out row, at 4 batch sizes
    variants = read_variants(exported)
    assert list(variants.variants) == list(artifacts.VARIANT_FILES) and variants.variants["int8"].gate()["agreement"] > 0.99
    tuning = read_tuning(exported)
    assert set(tuning.records("int8")) == {"1", "64"} and tuning.records("int8-dynamic") == {}


def test_a_missing_or_foreign_report_is_one_line_naming_its_stage(tmp_path):
    with pytest.raises(PipelineError, match=rf"^{tmp_path / artifacts.ORT_TUNING}: not found; run `make tune`$"):
        read_tuning(tmp_path)
    (tmp_path / artifacts.PARITY).write_text(json.dumps({"passed": True}))
    with pytest.raises(PipelineError, match=r"parity.json: not a report this code reads \(KeyError: 'labelled_set'\); delete it and run `make export`"):
        read_parity(tmp_path)


def test_a_stage_depends_on_the_files_its_program_imports(tmp_path):
    train = {str(p.relative_to(REPO)) for p in closure([REPO / "pipeline" / "train.py"])}
    assert {"pipeline/train.py", "pipeline/__init__.py", "pipeline/datasets/mnist.py", "handoff/manifest.py"} <= train
    assert not {"handoff/ort_options.py", "pipeline/datasets/otto_synthetic.py"} & train
    program = tmp_path / "program.py"  # an import inside a function counts; `from a import module` names the module
    program.write_text("import os\n\ndef f():\n    from handoff import timing\n    from handoff.errors import first_line\n")
    assert imports(program) == ((1, "os"), (4, "handoff.timing"), (5, "handoff.errors"))
